package acceptance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/prism-suite/prism/suites/fixture"
)

// badConfigEntry is one entry of a --bad-config file: an invalid plugin
// config and the field a plugin must name when it refuses it.
type badConfigEntry struct {
	Name   string         `yaml:"name"`
	Config map[string]any `yaml:"config"`
	Field  string         `yaml:"field"`
}

// LoadBadConfigs reads the invalid config examples of a --bad-config file:
// a YAML (or JSON) list of {name, config, field}, e.g.
//
//   - name: negative capacity
//     config: {max_keys: -1}
//     field: max_keys
//
// Each config replaces the plugin config of Initialize, whole; the plugin
// must refuse it with InvalidArgument naming field. Unknown keys, an empty
// list, and entries without a name, config or field are errors naming the
// file and the entry.
func LoadBadConfigs(path string) ([]fixture.BadConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--bad-config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var entries []badConfigEntry
	if err := dec.Decode(&entries); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("--bad-config %s: empty file: give at least one invalid config", path)
		}
		return nil, fmt.Errorf("--bad-config %s: %w", path, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("--bad-config %s: the list is empty: give at least one invalid config", path)
	}
	out := make([]fixture.BadConfig, 0, len(entries))
	for i, e := range entries {
		switch {
		case e.Name == "":
			return nil, fmt.Errorf("--bad-config %s: entry %d: name is missing", path, i+1)
		case e.Config == nil:
			return nil, fmt.Errorf("--bad-config %s: entry %d (%q): config is missing", path, i+1, e.Name)
		case e.Field == "":
			return nil, fmt.Errorf("--bad-config %s: entry %d (%q): field is missing (the config field the plugin must name when it refuses it)", path, i+1, e.Name)
		}
		out = append(out, fixture.BadConfig{Name: e.Name, Config: e.Config, Field: e.Field})
	}
	return out, nil
}
