package acceptance

import (
	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/suites/fixture"
)

// Invalid memstore configs found missing by the mutation run (task mutation,
// docs/mutation-survivors.md): without them a memstore that accepts
// max_keys 0 or 1.5, or a non-positive max_key_bytes, max_value_bytes,
// buffer_messages or block_timeout, or a negative sweep_interval, passed the
// suite. One per field the plugin validates, each at the edge of what it
// accepts. They join inTreeBadConfigs here, in a file of their own, so the
// table in config.go is not edited by two changes at once.
func init() {
	inTreeBadConfigs[backend.Memstore] = append(inTreeBadConfigs[backend.Memstore],
		fixture.BadConfig{Name: "zero capacity", Config: map[string]any{"max_keys": 0}, Field: "max_keys"},
		fixture.BadConfig{Name: "fractional capacity", Config: map[string]any{"max_keys": 1.5}, Field: "max_keys"},
		fixture.BadConfig{Name: "zero key size", Config: map[string]any{"max_key_bytes": 0}, Field: "max_key_bytes"},
		fixture.BadConfig{Name: "negative value size", Config: map[string]any{"max_value_bytes": -5}, Field: "max_value_bytes"},
		fixture.BadConfig{Name: "negative sweep interval", Config: map[string]any{"sweep_interval": "-1s"}, Field: "sweep_interval"},
		fixture.BadConfig{Name: "zero buffer", Config: map[string]any{"buffer_messages": 0}, Field: "buffer_messages"},
		fixture.BadConfig{Name: "zero block timeout", Config: map[string]any{"block_timeout": "0s"}, Field: "block_timeout"},
	)
}
