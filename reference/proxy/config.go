package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/prism-suite/prism/proto/tracing"
	"github.com/prism-suite/prism/reference/registry"

	"github.com/prism-suite/prism/reference/auth"
)

// Config is the proxy's configuration, usually read from YAML with [Load].
// Build one in Go with [DefaultConfig] and add namespaces; [Config.Validate]
// checks it either way.
//
//	listen: 127.0.0.1:7070          # gRPC (default 127.0.0.1:7070)
//	metrics_listen: 127.0.0.1:7071  # HTTP /metrics and /status; "off" disables
//	log_level: info                  # debug logs every call with its request id
//	drain_timeout: 15s               # SIGTERM: how long in-flight calls may take
//	health_interval: 2s              # how often each plugin is health-checked
//	restart: {initial_backoff: 250ms, max_backoff: 30s}
//	auth:                            # off when absent (local development only)
//	  issuer: https://idp.example.com/realms/prism
//	  audience: prism-proxy
//	  grants: {claim: scope, pattern: "prism:{namespace}:{access}"}
//	namespaces:
//	  - name: orders
//	    pattern: keyvalue             # keyvalue | pubsub | registry; or patterns: [keyvalue, pubsub]
//	    plugin:
//	      binary: ./prism-redis       # relative paths are relative to this file
//	      # builtin: redis            # or a driver linked into the proxy (no process)
//	      args: []
//	      config: {address: 127.0.0.1:6379, key_prefix: "orders:"}
//	      credentials:
//	        password: {env: REDIS_PASSWORD}   # or {file: /run/secrets/redis}
//
// A pattern that composes several plugins (the multicast registry) names
// them under slots instead of plugin, and takes its settings (see
// reference/registry.Config) in a registry block:
//
//	slots:
//	  registry: {binary: ...}
//	  messaging: {binary: ...}
//	registry: {max_identities: 10000, schema: {fields: {floor: {type: int}}}}
//
// plugin: fills every slot of the namespace's patterns with the same block.
//
// Namespaces whose plugin blocks are identical (binary, args, config,
// credential references and instance) share one plugin process, and so the
// same data: an identical config names the same store. Give namespaces that
// must hold separate data different configs (redis: key_prefix), or, for a
// plugin that keeps its data in its process (memstore), different instance
// labels.
type Config struct {
	// Listen is the gRPC listen address (host:port; port 0 picks one).
	Listen string `yaml:"listen"`
	// MetricsListen is the HTTP address of /metrics and /status; "off"
	// disables it.
	MetricsListen string `yaml:"metrics_listen"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// DrainTimeout bounds how long SIGTERM waits for in-flight unary calls
	// before it cancels them; open streams (subscriptions) end at once with
	// Unavailable.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// HealthInterval is how often each plugin's HealthCheck is called.
	HealthInterval time.Duration `yaml:"health_interval"`
	// Restart is the backoff of restarts of a crashed plugin.
	Restart Backoff `yaml:"restart"`
	// Namespaces are the namespaces the proxy serves.
	Namespaces []Namespace `yaml:"namespaces"`
	// Auth turns on data-plane auth: every data call needs a JWT from this
	// OIDC issuer that grants the access the call needs on its namespace
	// (see reference/auth). nil is auth off, for local development only: the
	// proxy then accepts every call and says so loudly at start.
	Auth *auth.Config `yaml:"auth,omitempty"`
	// Limits bound what clients can make the proxy hold (see [Limits]).
	Limits Limits `yaml:"limits"`
	// Admin turns on the admin API (prism.admin.v1) on its own listener
	// (see [AdminConfig]); nil is off. It needs Auth.
	Admin *AdminConfig `yaml:"admin,omitempty"`
	// Tracing exports OpenTelemetry traces over OTLP/gRPC (tracing:
	// {endpoint: http://127.0.0.1:4317, service_name: prism-proxy}); the
	// plugins the proxy launches get the same endpoint. Without it,
	// prism-proxy reads the standard OTEL_* environment (proto/tracing);
	// with neither, tracing is off and nothing of it is installed.
	Tracing tracing.Config `yaml:"tracing,omitempty"`

	// dir is the folder relative paths are resolved against ("" = cwd).
	dir string
}

// Backoff is an exponential backoff with jitter: the n-th delay is drawn
// from [d/2, d] where d = min(InitialBackoff × 2ⁿ, MaxBackoff).
type Backoff struct {
	// InitialBackoff is the first delay.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	// MaxBackoff caps the delay.
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// Namespace is one namespace: its name, its pattern and the plugins that
// fill the pattern's slots.
type Namespace struct {
	// Name is what clients send in x-prism-namespace.
	Name string `yaml:"name"`
	// Pattern is the data API the namespace serves: keyvalue or pubsub.
	Pattern Pattern `yaml:"pattern,omitempty"`
	// Patterns, instead of Pattern, lets one namespace serve several data
	// APIs (e.g. keyvalue and pubsub from one plugin).
	Patterns []Pattern `yaml:"patterns,omitempty"`
	// Plugin fills every slot of the namespace's patterns with one plugin
	// block (one process, since the blocks are identical).
	Plugin *PluginSpec `yaml:"plugin,omitempty"`
	// Slots fills the pattern's slots by name (for patterns with several).
	Slots map[string]*PluginSpec `yaml:"slots,omitempty"`
	// Registry is the registry pattern's settings (schema, quota, ...).
	Registry *registry.Config `yaml:"registry,omitempty"`
}

// PluginSpec is how to run and configure one plugin.
type PluginSpec struct {
	// Binary is the plugin executable. Exactly one of Binary and Builtin
	// is set.
	Binary string `yaml:"binary,omitempty"`
	// Builtin names a Go driver linked into the proxy (see [WithBuiltin]),
	// served in the proxy's process instead of a plugin process: the same
	// lifecycle, config, credentials and instance rules, no second hop.
	Builtin string `yaml:"builtin,omitempty"`
	// Args are passed to the binary (a builtin takes none).
	Args []string `yaml:"args,omitempty"`
	// Config is the plugin's Initialize config document.
	Config map[string]any `yaml:"config,omitempty"`
	// Credentials are passed in Initialize apart from Config; each names an
	// environment variable or a file, never a value, so the config file and
	// the logs hold no secret.
	Credentials map[string]SecretRef `yaml:"credentials,omitempty"`
	// Instance is a label that is part of the plugin's identity but is not
	// sent to it: namespaces with otherwise identical plugin blocks but
	// different instances get separate processes.
	Instance string `yaml:"instance,omitempty"`
}

// SecretRef names where a credential's value is read from when the plugin
// (re)starts: an environment variable or a file (its content, without a
// trailing newline). Exactly one of Env and File is set.
type SecretRef struct {
	Env  string `yaml:"env,omitempty" json:"env,omitempty"`
	File string `yaml:"file,omitempty" json:"file,omitempty"`
}

// Defaults of [DefaultConfig].
const (
	DefaultListen         = "127.0.0.1:7070"
	DefaultMetricsListen  = "127.0.0.1:7071"
	DefaultDrainTimeout   = 15 * time.Second
	DefaultHealthInterval = 2 * time.Second
	DefaultInitialBackoff = 250 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
)

// DefaultConfig returns a config with every default and no namespace.
func DefaultConfig() Config {
	return Config{
		Listen: DefaultListen, MetricsListen: DefaultMetricsListen, LogLevel: "info",
		DrainTimeout: DefaultDrainTimeout, HealthInterval: DefaultHealthInterval,
		Restart: Backoff{InitialBackoff: DefaultInitialBackoff, MaxBackoff: DefaultMaxBackoff},
		Limits:  DefaultLimits(),
	}
}

// Load reads and validates a YAML config file. Relative paths in it
// (plugin binaries, credential files) are relative to the file's folder.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return Parse(b, filepath.Dir(abs))
}

// Parse decodes and validates a YAML config; dir is the folder relative
// paths are resolved against ("" for the working directory). Unknown fields
// are errors. Every error names the namespace and field it is about, and
// never quotes a credential.
func Parse(data []byte, dir string) (Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
	if err := checkShape(&root); err != nil {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
	c := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
	c.dir = dir
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// WithDir returns a copy of c whose relative paths resolve against dir.
func (c Config) WithDir(dir string) Config { c.dir = dir; return c }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks the config and returns every problem at once, one per
// line, each naming where it is: "namespaces[1] (orders).plugin.binary: ...".
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	if err := checkHostPort(c.Listen); err != nil {
		add("listen", "%v", err)
	}
	if c.MetricsListen != "off" {
		if err := checkHostPort(c.MetricsListen); err != nil {
			add("metrics_listen", "%v (or \"off\")", err)
		}
	}
	switch strings.ToLower(c.LogLevel) {
	case "", "debug", "info", "warn", "error":
	default:
		add("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.DrainTimeout <= 0 {
		add("drain_timeout", "must be positive, got %v", c.DrainTimeout)
	}
	if c.HealthInterval <= 0 {
		add("health_interval", "must be positive, got %v", c.HealthInterval)
	}
	if c.Restart.InitialBackoff <= 0 {
		add("restart.initial_backoff", "must be positive, got %v", c.Restart.InitialBackoff)
	}
	if c.Restart.MaxBackoff < c.Restart.InitialBackoff {
		add("restart.max_backoff", "%v is less than initial_backoff %v", c.Restart.MaxBackoff, c.Restart.InitialBackoff)
	}
	c.Limits.validate(add)
	if err := c.Tracing.Validate(); err != nil {
		add("tracing", "%v", err)
	}
	if c.Auth != nil && c.Auth.MaxTokenBytes+1024 > int(c.Limits.MaxHeaderBytes) {
		add("limits.max_header_bytes", "%d leaves no room for auth.max_token_bytes %d", c.Limits.MaxHeaderBytes, c.Auth.MaxTokenBytes)
	}
	if c.Auth != nil {
		if err := c.Auth.Validate(); err != nil {
			for _, e := range unjoin(err) {
				errs = append(errs, fmt.Errorf("auth.%w", e))
			}
		}
	}
	if len(c.Namespaces) == 0 && c.Admin == nil {
		add("namespaces", "at least one namespace is required (or an admin: block, to add them through the admin API)")
	}
	errs = append(errs, c.checkAdmin()...)
	seen := map[string]int{}
	for i, ns := range c.Namespaces {
		at := fmt.Sprintf("namespaces[%d]", i)
		if ns.Name != "" {
			at += " (" + ns.Name + ")"
		}
		if ns.Name != "" && nameRE.MatchString(ns.Name) {
			if j, dup := seen[ns.Name]; dup {
				add(at+".name", "%q is already the name of namespaces[%d]", ns.Name, j)
			}
			seen[ns.Name] = i
		}
		errs = append(errs, c.checkNamespace(at, ns)...)
	}
	return errors.Join(errs...)
}

// checkNamespace validates one namespace; at is where it is
// ("namespaces[2] (orders)" in a config file, "namespace (orders)" in an
// admin call), and every error starts with it and the field.
func (c Config) checkNamespace(at string, ns Namespace) []error {
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	switch {
	case ns.Name == "":
		add(at+".name", "is required")
	case !nameRE.MatchString(ns.Name):
		add(at+".name", "%q must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", ns.Name)
	}
	pat, perr := ns.pattern()
	if perr != nil {
		add(at+perr.path, "%s", perr.msg)
		return errs
	}
	errs = append(errs, ns.checkRegistry(at)...)
	slots, paths, err := ns.slots(pat)
	if err != nil {
		add(at+err.path, "%s", err.msg)
		return errs
	}
	for _, s := range pat.Slots {
		spec := slots[s.Name]
		if spec == nil {
			add(at+".slots."+s.Name, "is required by pattern %s", s.Pattern)
			continue
		}
		for _, e := range c.checkPlugin(spec) {
			add(at+paths[s.Name]+e.path, "%s", e.msg)
		}
	}
	return errs
}

type pathErr struct{ path, msg string }

// PatternList returns the namespace's patterns (Pattern or Patterns).
func (ns Namespace) PatternList() []Pattern {
	if len(ns.Patterns) > 0 {
		return ns.Patterns
	}
	if ns.Pattern != "" {
		return []Pattern{ns.Pattern}
	}
	return nil
}

// pattern returns the slots of all the namespace's patterns together.
func (ns Namespace) pattern() (patternSpec, *pathErr) {
	var out patternSpec
	switch {
	case ns.Pattern != "" && len(ns.Patterns) > 0:
		return out, &pathErr{".patterns", "give either pattern or patterns, not both"}
	case ns.Pattern == "" && len(ns.Patterns) == 0:
		return out, &pathErr{".pattern", "is required: one of " + strings.Join(patternNames(), ", ")}
	}
	seen := map[Pattern]bool{}
	for i, name := range ns.PatternList() {
		at := ".pattern"
		if len(ns.Patterns) > 0 {
			at = fmt.Sprintf(".patterns[%d]", i)
		}
		pat, ok := patterns[name]
		if !ok {
			return out, &pathErr{at, fmt.Sprintf("%q is not one of %s", name, strings.Join(patternNames(), ", "))}
		}
		if seen[name] {
			return out, &pathErr{at, fmt.Sprintf("%q is listed twice", name)}
		}
		seen[name] = true
		out.Slots = append(out.Slots, pat.Slots...)
	}
	return out, nil
}

// slots returns the namespace's plugins by slot name, and the config path of
// each (".plugin" or ".slots.<name>").
func (ns Namespace) slots(pat patternSpec) (map[string]*PluginSpec, map[string]string, *pathErr) {
	out, paths := map[string]*PluginSpec{}, map[string]string{}
	switch {
	case ns.Plugin != nil && len(ns.Slots) > 0:
		return nil, nil, &pathErr{".plugin", "give either plugin or slots, not both"}
	case ns.Plugin != nil:
		for _, s := range pat.Slots {
			out[s.Name], paths[s.Name] = ns.Plugin, ".plugin"
		}
	case len(ns.Slots) == 0:
		return nil, nil, &pathErr{".plugin", "is required"}
	default:
		for name, spec := range ns.Slots {
			if !slices.ContainsFunc(pat.Slots, func(s slotSpec) bool { return s.Name == name }) {
				return nil, nil, &pathErr{".slots." + name, fmt.Sprintf("patterns %v have no slot %q", ns.PatternList(), name)}
			}
			out[name], paths[name] = spec, ".slots."+name
		}
	}
	return out, paths, nil
}

func (c Config) checkPlugin(p *PluginSpec) []pathErr {
	var errs []pathErr
	switch {
	case p.Binary != "" && p.Builtin != "":
		errs = append(errs, pathErr{"", "binary and builtin are exclusive: give the plugin executable or the name of a driver linked into the proxy, not both"})
	case p.Builtin != "":
		if len(p.Args) > 0 {
			errs = append(errs, pathErr{".args", "a builtin driver takes no args (give them to a binary)"})
		}
	case p.Binary == "":
		errs = append(errs, pathErr{".binary", "is required: the path to the plugin executable (or builtin: the name of a driver linked into the proxy)"})
	default:
		bin := c.resolve(p.Binary)
		if fi, err := os.Stat(bin); err != nil {
			errs = append(errs, pathErr{".binary", fmt.Sprintf("%s: %v", bin, errors.Unwrap(err))})
		} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
			errs = append(errs, pathErr{".binary", bin + " is not an executable file"})
		}
	}
	if _, err := structpb.NewStruct(p.Config); err != nil {
		errs = append(errs, pathErr{".config", fmt.Sprintf("cannot be sent to the plugin: %v", err)})
	}
	for _, k := range sortedKeys(p.Credentials) {
		if _, err := c.readSecret(p.Credentials[k]); err != nil {
			errs = append(errs, pathErr{".credentials." + k, err.Error()})
		}
	}
	return errs
}

func (c Config) resolve(path string) string {
	if path == "" || filepath.IsAbs(path) || c.dir == "" {
		return path
	}
	return filepath.Join(c.dir, path)
}

// readSecret reads a credential's value. Errors never include the value.
func (c Config) readSecret(r SecretRef) (string, error) {
	switch {
	case r.Env != "" && r.File != "":
		return "", errors.New("give either env or file, not both")
	case r.Env != "":
		v, ok := os.LookupEnv(r.Env)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", r.Env)
		}
		return v, nil
	case r.File != "":
		b, err := os.ReadFile(c.resolve(r.File))
		if err != nil {
			return "", fmt.Errorf("read credential file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	default:
		return "", errors.New("give {env: VAR} or {file: path}")
	}
}

// credentials resolves every credential of p.
func (c Config) credentials(p *PluginSpec) (map[string]string, error) {
	out := map[string]string{}
	for k, r := range p.Credentials {
		v, err := c.readSecret(r)
		if err != nil {
			return nil, fmt.Errorf("credentials.%s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

// identity is the key under which identical plugin blocks share a process:
// a digest of the resolved binary, args, config, credential references (not
// values) and instance.
func (c Config) identity(p *PluginSpec) string {
	b, _ := json.Marshal(struct {
		Binary      string
		Builtin     string `json:",omitempty"`
		Args        []string
		Config      map[string]any
		Credentials map[string]SecretRef
		Instance    string
	}{c.resolve(p.Binary), p.Builtin, p.Args, p.Config, p.Credentials, p.Instance})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

func checkHostPort(addr string) error {
	if addr == "" {
		return errors.New("is required (host:port)")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// checkShape walks the YAML before it is decoded into Config, so unknown
// fields and inline credentials are reported with the namespace and field
// they are in, and a credential value is never echoed.
func checkShape(root *yaml.Node) error {
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: the config must be a mapping", doc.Line)
	}
	var errs []error
	errs = append(errs, checkKeys(doc, "", "listen", "metrics_listen", "log_level", "drain_timeout", "health_interval", "restart", "namespaces", "auth", "limits", "admin", "tracing")...)
	if a := child(doc, "admin"); a != nil {
		errs = append(errs, checkKeys(a, "admin", "listen", "role", "store", "audit_log")...)
		if r := child(a, "role"); r != nil {
			errs = append(errs, checkKeys(r, "admin.role", "claim", "value")...)
		}
		if st := child(a, "store"); st != nil {
			errs = append(errs, checkKeys(st, "admin.store", "file", "namespace", "poll_interval")...)
		}
	}
	if tr := child(doc, "tracing"); tr != nil {
		errs = append(errs, checkKeys(tr, "tracing", "endpoint", "service_name")...)
	}
	if l := child(doc, "limits"); l != nil {
		errs = append(errs, checkKeys(l, "limits", "max_receive_bytes", "service_receive_bytes", "max_concurrent_streams", "max_header_bytes",
			"max_in_flight", "first_message_timeout", "keepalive_min_time", "idle_timeout", "max_health_watchers")...)
	}
	if r := child(doc, "restart"); r != nil {
		errs = append(errs, checkKeys(r, "restart", "initial_backoff", "max_backoff")...)
	}
	nss := child(doc, "namespaces")
	if nss != nil && nss.Kind != yaml.SequenceNode {
		errs = append(errs, fmt.Errorf("namespaces: line %d: must be a list", nss.Line))
		nss = nil
	}
	if nss != nil {
		for i, ns := range nss.Content {
			at := fmt.Sprintf("namespaces[%d]", i)
			if n := child(ns, "name"); n != nil && n.Kind == yaml.ScalarNode && n.Value != "" {
				at += " (" + n.Value + ")"
			}
			errs = append(errs, checkNamespaceShape(ns, at)...)
		}
	}
	return errors.Join(errs...)
}

// checkNamespaceShape checks one namespace's YAML before it is decoded:
// unknown fields and inline credentials, named with at and the field.
func checkNamespaceShape(ns *yaml.Node, at string) []error {
	if ns.Kind != yaml.MappingNode {
		return []error{fmt.Errorf("%s: line %d: must be a mapping", at, ns.Line)}
	}
	errs := checkKeys(ns, at, "name", "pattern", "patterns", "plugin", "slots", "registry")
	if p := child(ns, "plugin"); p != nil {
		errs = append(errs, checkPluginShape(p, at+".plugin")...)
	}
	if s := child(ns, "slots"); s != nil && s.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(s.Content); j += 2 {
			errs = append(errs, checkPluginShape(s.Content[j+1], at+".slots."+s.Content[j].Value)...)
		}
	}
	return errs
}

func checkPluginShape(p *yaml.Node, at string) []error {
	if p.Kind != yaml.MappingNode {
		return []error{fmt.Errorf("%s: line %d: must be a mapping with binary or builtin, args, config, credentials", at, p.Line)}
	}
	errs := checkKeys(p, at, "binary", "builtin", "args", "config", "credentials", "instance")
	creds := child(p, "credentials")
	if creds == nil {
		return errs
	}
	if creds.Kind != yaml.MappingNode {
		return append(errs, fmt.Errorf("%s.credentials: line %d: must be a mapping of name: {env: VAR} or {file: path}", at, creds.Line))
	}
	for j := 0; j+1 < len(creds.Content); j += 2 {
		k, v := creds.Content[j].Value, creds.Content[j+1]
		if v.Kind != yaml.MappingNode {
			// Never quote v.Value: it may be a secret someone pasted in.
			errs = append(errs, fmt.Errorf("%s.credentials.%s: line %d: inline values are not allowed; use {env: VAR} or {file: path}", at, k, v.Line))
			continue
		}
		errs = append(errs, checkKeys(v, at+".credentials."+k, "env", "file")...)
	}
	return errs
}

func checkKeys(m *yaml.Node, at string, allowed ...string) []error {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	var errs []error
	for j := 0; j+1 < len(m.Content); j += 2 {
		k := m.Content[j]
		if !slices.Contains(allowed, k.Value) {
			where := at
			if where == "" {
				where = "config"
			}
			errs = append(errs, fmt.Errorf("%s: line %d: unknown field %q (known: %s)", where, k.Line, k.Value, strings.Join(allowed, ", ")))
		}
	}
	return errs
}

func child(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for j := 0; j+1 < len(m.Content); j += 2 {
		if m.Content[j].Value == key {
			return m.Content[j+1]
		}
	}
	return nil
}
