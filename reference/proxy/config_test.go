package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseErrorsNameNamespaceAndField(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "plugin")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "not-exec")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	const secret = "hunter2-very-secret"
	ns := func(body string) string { return "namespaces:\n" + body }
	cases := []struct {
		name, yaml string
		want       []string
		not        string
	}{
		{"missing binary", ns("  - name: orders\n    pattern: keyvalue\n    plugin: {args: []}\n"),
			[]string{"namespaces[0] (orders).plugin.binary: is required"}, ""},
		{"missing binary file", ns("  - name: a\n    pattern: keyvalue\n    plugin: {binary: plugin}\n  - name: orders\n    pattern: keyvalue\n    plugin: {binary: nope}\n"),
			[]string{"namespaces[1] (orders).plugin.binary: " + filepath.Join(dir, "nope")}, ""},
		{"not executable", ns("  - name: orders\n    pattern: keyvalue\n    plugin: {binary: not-exec}\n"),
			[]string{"namespaces[0] (orders).plugin.binary: " + notExec + " is not an executable file"}, ""},
		{"unknown pattern", ns("  - name: orders\n    pattern: graph\n    plugin: {binary: plugin}\n"),
			[]string{`namespaces[0] (orders).pattern: "graph" is not one of keyvalue, pubsub`}, ""},
		{"no pattern", ns("  - name: orders\n    plugin: {binary: plugin}\n"),
			[]string{"namespaces[0] (orders).pattern: is required"}, ""},
		{"pattern and patterns", ns("  - name: orders\n    pattern: keyvalue\n    patterns: [pubsub]\n    plugin: {binary: plugin}\n"),
			[]string{"namespaces[0] (orders).patterns: give either pattern or patterns"}, ""},
		{"unknown pattern in list", ns("  - name: orders\n    patterns: [keyvalue, graph]\n    plugin: {binary: plugin}\n"),
			[]string{`namespaces[0] (orders).patterns[1]: "graph"`}, ""},
		{"no name", ns("  - pattern: keyvalue\n    plugin: {binary: plugin}\n"),
			[]string{"namespaces[0].name: is required"}, ""},
		{"bad name", ns("  - name: 'a b'\n    pattern: keyvalue\n    plugin: {binary: plugin}\n"),
			[]string{"namespaces[0] (a b).name:"}, ""},
		{"duplicate name", ns("  - name: orders\n    pattern: keyvalue\n    plugin: {binary: plugin}\n  - name: orders\n    pattern: keyvalue\n    plugin: {binary: plugin}\n"),
			[]string{`namespaces[1] (orders).name: "orders" is already the name of namespaces[0]`}, ""},
		{"unknown plugin field", ns("  - name: orders\n    pattern: keyvalue\n    plugin: {binry: plugin}\n"),
			[]string{`namespaces[0] (orders).plugin: line 4: unknown field "binry"`}, ""},
		{"unknown namespace field", ns("  - name: orders\n    patern: keyvalue\n"),
			[]string{`namespaces[0] (orders): line 3: unknown field "patern"`}, ""},
		{"bad tracing endpoint", "tracing: {endpoint: 'ftp://127.0.0.1:4317'}\n" + ns("  - name: orders\n    pattern: keyvalue\n    plugin: {binary: plugin}\n"),
			[]string{`tracing: endpoint "ftp://127.0.0.1:4317": want http://host:port, https://host:port or host:port`}, ""},
		{"unknown tracing field", "tracing: {endpont: 'http://127.0.0.1:4317'}\n" + ns("  - name: orders\n    pattern: keyvalue\n    plugin: {binary: plugin}\n"),
			[]string{`tracing: line 1: unknown field "endpont"`}, ""},
		{"unknown top-level field", "lisen: 1\n" + ns("  - name: orders\n    pattern: keyvalue\n    plugin: {binary: plugin}\n"),
			[]string{`config: line 1: unknown field "lisen"`}, ""},
		{"inline credential", ns("  - name: orders\n    pattern: keyvalue\n    plugin:\n      binary: plugin\n      credentials:\n        password: " + secret + "\n"),
			[]string{"namespaces[0] (orders).plugin.credentials.password: line 7: inline values are not allowed"}, secret},
		{"unset env credential", ns("  - name: orders\n    pattern: keyvalue\n    plugin:\n      binary: plugin\n      credentials:\n        password: {env: PRISM_TEST_UNSET_VAR}\n"),
			[]string{"namespaces[0] (orders).plugin.credentials.password: environment variable PRISM_TEST_UNSET_VAR is not set"}, ""},
		{"missing credential file", ns("  - name: orders\n    pattern: keyvalue\n    plugin:\n      binary: plugin\n      credentials:\n        password: {file: no-such-file}\n"),
			[]string{"namespaces[0] (orders).plugin.credentials.password: read credential file"}, ""},
		{"env and file", ns("  - name: orders\n    pattern: keyvalue\n    plugin:\n      binary: plugin\n      credentials:\n        password: {env: X, file: y}\n"),
			[]string{"namespaces[0] (orders).plugin.credentials.password: give either env or file"}, ""},
		{"unknown slot", ns("  - name: orders\n    pattern: keyvalue\n    slots:\n      registry: {binary: plugin}\n"),
			[]string{`namespaces[0] (orders).slots.registry: patterns [keyvalue] have no slot "registry"`}, ""},
		{"slot missing binary", ns("  - name: orders\n    pattern: keyvalue\n    slots:\n      keyvalue: {args: [x]}\n"),
			[]string{"namespaces[0] (orders).slots.keyvalue.binary: is required"}, ""},
		{"plugin and slots", ns("  - name: orders\n    pattern: keyvalue\n    plugin: {binary: plugin}\n    slots:\n      keyvalue: {binary: plugin}\n"),
			[]string{"namespaces[0] (orders).plugin: give either plugin or slots"}, ""},
		{"binary and builtin", ns("  - name: orders\n    pattern: keyvalue\n    plugin: {binary: plugin, builtin: memstore}\n"),
			[]string{"namespaces[0] (orders).plugin: binary and builtin are exclusive"}, ""},
		{"neither binary nor builtin", ns("  - name: orders\n    pattern: keyvalue\n    plugin: {config: {a: 1}}\n"),
			[]string{"namespaces[0] (orders).plugin.binary: is required: the path to the plugin executable (or builtin:"}, ""},
		{"builtin with args", ns("  - name: orders\n    pattern: keyvalue\n    plugin: {builtin: memstore, args: [x]}\n"),
			[]string{"namespaces[0] (orders).plugin.args: a builtin driver takes no args"}, ""},
		{"no plugin", ns("  - name: orders\n    pattern: keyvalue\n"),
			[]string{"namespaces[0] (orders).plugin: is required"}, ""},
		{"config not sendable", ns("  - name: orders\n    pattern: keyvalue\n    plugin:\n      binary: plugin\n      config: {when: 2001-02-03}\n"),
			[]string{"namespaces[0] (orders).plugin.config: cannot be sent to the plugin"}, ""},
		{"bad listen", "listen: nonsense\n" + ns("  - name: orders\n    pattern: keyvalue\n    plugin: {binary: plugin}\n"),
			[]string{`listen: "nonsense" is not host:port`}, ""},
		{"no namespaces", "listen: 127.0.0.1:1\n", []string{"namespaces: at least one namespace is required"}, ""},
		{"bad backoff", "restart: {initial_backoff: 2s, max_backoff: 1s}\n" + ns("  - name: orders\n    pattern: keyvalue\n    plugin: {binary: plugin}\n"),
			[]string{"restart.max_backoff: 1s is less than initial_backoff 2s"}, ""},
		{"every error at once", ns("  - name: a\n    pattern: graph\n    plugin: {binary: plugin}\n  - name: b\n    pattern: keyvalue\n    plugin: {}\n"),
			[]string{"namespaces[0] (a).pattern:", "namespaces[1] (b).plugin.binary: is required"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), dir)
			if err == nil {
				t.Fatalf("Parse: got no error, want one naming %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error:\n%v\nwant it to contain %q", err, w)
				}
			}
			if c.not != "" && strings.Contains(err.Error(), c.not) {
				t.Errorf("Parse error quotes the credential value:\n%v", err)
			}
		})
	}
}

func TestParseDefaultsAndRelativePaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plugin"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PRISM_TEST_USER", "alice")
	path := filepath.Join(dir, "proxy.yaml")
	yaml := `namespaces:
  - name: orders
    pattern: keyvalue
    plugin:
      binary: plugin
      config: {address: "127.0.0.1:6379", pool_size: 3}
      credentials:
        password: {file: pw}
        username: {env: PRISM_TEST_USER}
  - name: carts
    pattern: keyvalue
    plugin:
      binary: plugin
      config: {address: "127.0.0.1:6379", pool_size: 3}
      credentials:
        password: {file: pw}
        username: {env: PRISM_TEST_USER}
  - name: sessions
    pattern: keyvalue
    plugin:
      binary: plugin
      config: {address: "127.0.0.1:6379", pool_size: 3}
      credentials:
        password: {file: pw}
        username: {env: PRISM_TEST_USER}
      instance: own
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Listen != DefaultListen || c.MetricsListen != DefaultMetricsListen || c.DrainTimeout != DefaultDrainTimeout ||
		c.Restart.InitialBackoff != DefaultInitialBackoff || c.Restart.MaxBackoff != DefaultMaxBackoff {
		t.Errorf("defaults: got %+v", c)
	}
	p := c.Namespaces[0].Plugin
	if got := c.resolve(p.Binary); got != filepath.Join(dir, "plugin") {
		t.Errorf("binary resolves to %q, want it relative to the config file", got)
	}
	creds, err := c.credentials(p)
	if err != nil {
		t.Fatal(err)
	}
	if creds["password"] != "s3cret" || creds["username"] != "alice" {
		t.Errorf("credentials: got %v", creds)
	}
	a, b, own := c.identity(c.Namespaces[0].Plugin), c.identity(c.Namespaces[1].Plugin), c.identity(c.Namespaces[2].Plugin)
	if a != b {
		t.Errorf("identical plugin blocks have identities %s and %s, want one shared process", a, b)
	}
	if a == own {
		t.Errorf("a block with its own instance label shares identity %s", a)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	lo, hi := func() float64 { return 0 }, func() float64 { return 0.999999 }
	cases := []struct {
		attempt int
		min     time.Duration
		max     time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{2, 200 * time.Millisecond, 400 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{4, 500 * time.Millisecond, time.Second}, // capped
		{40, 500 * time.Millisecond, time.Second},
		{1000, 500 * time.Millisecond, time.Second}, // no overflow
	}
	for _, c := range cases {
		if got := backoffDelay(b, c.attempt, lo); got != c.min {
			t.Errorf("attempt %d, lowest jitter: got %v, want %v", c.attempt, got, c.min)
		}
		if got := backoffDelay(b, c.attempt, hi); got < c.max-time.Millisecond || got > c.max {
			t.Errorf("attempt %d, highest jitter: got %v, want about %v", c.attempt, got, c.max)
		}
	}
}
