// Package acceptance runs Prism's suites against a plugin and turns the
// outcomes into verdicts per capability and report files. It is what
// prism-accept and `task accept` run, and what a plugin author calls from
// their own `go test`:
//
//	var _ = acceptance.Register(acceptance.Config{Plugin: "./bin/my-plugin", Backend: "redis"})
//
// inside their Ginkgo suite, or acceptance.Run(t, cfg) for a plain test.
package acceptance

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"strings"
	"time"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/cluster"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	"github.com/prism-suite/prism/suites/fixture"
)

// SuiteVersion is the version of the suites, recorded in every report.
const SuiteVersion = "0.1.0"

// Config says what to certify and how. Build it with [DefaultConfig]; a
// Config passed to Register or Run is copied, never changed.
type Config struct {
	// Plugin is the plugin binary to certify (not used with Pattern).
	Plugin string
	// Pattern, when set, certifies a pattern of the reference proxy instead
	// of a plugin: "registry" (PatternRegistry) runs the registry suite
	// through ProxyBinary, whose namespaces compose RegistrySlot and
	// MessagingSlot (plugins prism-<slot> next to ProxyBinary).
	Pattern string
	// RegistrySlot and MessagingSlot are the backends of the registry
	// pattern's slots: memstore or redis, and memstore, nats or redis.
	RegistrySlot, MessagingSlot backend.Kind
	// PluginArgs are passed to the plugin binary.
	PluginArgs []string
	// PluginEnv is added to the plugin's environment.
	PluginEnv []string
	// Backend is the backend the plugin talks to: memstore (none), redis,
	// nats, or the name of Backends.Definition (a backend.yaml); the
	// harness starts an instance of it.
	Backend backend.Kind
	// Backends configures how the instance is provided (auto, container, ...).
	Backends backend.Options
	// Topology is "single" (default: one server) or "cluster" (redis and
	// nats: a Redis Cluster of 3 primaries and 3 replicas, a NATS cluster of
	// 3 nodes with JetStream; harness/cluster, provider process or
	// container).
	Topology string
	// PluginConfig is merged over the config the instance provides.
	PluginConfig map[string]any
	// BadConfigs are invalid configs the lifecycle specs send; defaults exist
	// for the in-tree backends.
	BadConfigs []fixture.BadConfig
	// Via says how the suites reach the plugin: direct, proxy (through the
	// reference proxy), both (every data suite runs twice, once each way),
	// or builtin (the plugin is Builtin, a driver linked into ProxyBinary:
	// the data suites run through a proxy whose namespace says "builtin:
	// <name>", and the lifecycle specs run against the same binary's driver
	// served as a plugin process, prism-proxy --serve-builtin <name>).
	// Lifecycle specs always run directly.
	Via target.Via
	// Builtin is the driver a builtin run certifies (default: Backend's
	// name); it must be linked into ProxyBinary (prism-proxy
	// --list-builtins). Plugin is then empty.
	Builtin string
	// ProxyBinary is the prism-proxy binary used when Via is proxy or both
	// (default bin/prism-proxy).
	ProxyBinary string
	// Auth also certifies auth (auth.go): a test OIDC issuer, a second proxy
	// with auth on, and backend users confined to one namespace each.
	Auth bool
	// Issuer is the OIDC issuer of an Auth run: IssuerTest (default), the
	// in-process test issuer that mints any token, or IssuerDevIdP,
	// prism-dev-idp (DevIdPBinary) run as a process, whose tokens a user
	// gets through the device flow; the specs that need tokens with chosen
	// claims or keys skip then, saying so.
	Issuer string
	// DevIdPBinary is the prism-dev-idp binary of Issuer IssuerDevIdP
	// (default bin/prism-dev-idp).
	DevIdPBinary string
	// Admin also certifies the proxy's admin API (admin.go): a test OIDC
	// issuer and two proxies with the admin API on sharing one admin store.
	Admin bool
	// Namespace is the namespace the plugin is initialized for.
	Namespace string
	// Require lists capabilities the run requires; one not declared fails the run.
	Require capability.Set
	// ProbeUndeclared also runs the specs of undeclared capabilities, as
	// probes that never fail the run, to report "works but undeclared".
	ProbeUndeclared bool
	// Timeouts are the run's deadlines.
	Timeouts fixture.Timeouts
	// ReportDir is where report files are written ("" writes none).
	ReportDir string
	// Seed is recorded in the report and seeds resource names.
	Seed int64
	// Command is the command line that reproduces the run, for reports,
	// without a focus or report folder: the runner appends the run's for the
	// report's command, and a focus on one spec for each spec's reproduce
	// command. "" writes no reproduce commands.
	Command string
	// CommandLeftOut names what shaped the run but is not in Command
	// (environment variables holding secrets).
	CommandLeftOut []string
	// Shard is set in a process of a --procs run (procs.go): the specs it
	// runs and its parent's command and report folder.
	Shard *Shard
	// Logf prints progress lines (default: to stdout).
	Logf func(format string, args ...any)
}

// DefaultConfig returns a config for memstore, direct, with default timeouts
// and backend options.
func DefaultConfig() Config {
	return Config{
		Backend:   backend.Memstore,
		Backends:  backend.DefaultOptions(),
		Via:       target.Direct,
		Namespace: "default",
		Timeouts:  fixture.DefaultTimeouts(),
		Seed:      time.Now().UnixNano() % 1_000_000,
	}
}

func (c Config) clone() Config {
	c.PluginConfig = maps.Clone(c.PluginConfig)
	c.Require = maps.Clone(c.Require)
	c.PluginArgs = append([]string(nil), c.PluginArgs...)
	c.PluginEnv = append([]string(nil), c.PluginEnv...)
	c.CommandLeftOut = append([]string(nil), c.CommandLeftOut...)
	c.BadConfigs = append([]fixture.BadConfig(nil), c.BadConfigs...)
	if c.Logf == nil {
		c.Logf = func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	}
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.Via == "" {
		c.Via = target.Direct
	}
	if c.ProxyBinary == "" {
		c.ProxyBinary = "bin/prism-proxy"
	}
	if c.Issuer == "" {
		c.Issuer = IssuerTest
	}
	if c.DevIdPBinary == "" {
		c.DevIdPBinary = "bin/prism-dev-idp"
	}
	if c.Via == ViaBuiltin && c.Builtin == "" {
		c.Builtin = string(c.Backend)
	}
	if c.Timeouts == (fixture.Timeouts{}) {
		c.Timeouts = fixture.DefaultTimeouts()
	}
	return c
}

// The topologies of Config.Topology.
const (
	TopologySingle  = "single"
	TopologyCluster = "cluster"
)

// Validate reports a config that cannot run, naming the field.

func (c Config) Validate() error {
	switch c.Pattern {
	case "":
	case PatternRegistry:
		if c.RegistrySlot != backend.Memstore && c.RegistrySlot != backend.Redis {
			return fmt.Errorf("config: RegistrySlot (--registry-slot) %q is not one of memstore, redis", c.RegistrySlot)
		}
		if c.MessagingSlot != backend.Memstore && c.MessagingSlot != backend.NATS && c.MessagingSlot != backend.Redis {
			return fmt.Errorf("config: MessagingSlot (--messaging-slot) %q is not one of memstore, nats, redis", c.MessagingSlot)
		}
		return nil
	default:
		return fmt.Errorf("config: Pattern (--pattern) %q is not %q", c.Pattern, PatternRegistry)
	}
	switch {
	case c.Issuer != "" && c.Issuer != IssuerTest && c.Issuer != IssuerDevIdP:
		return fmt.Errorf("config: Issuer (--issuer) %q is not one of %s, %s", c.Issuer, IssuerTest, IssuerDevIdP)
	case c.Issuer == IssuerDevIdP && !c.Auth:
		return fmt.Errorf("config: Issuer (--issuer) %s needs Auth (--auth): the issuer is only used by the auth suite", IssuerDevIdP)
	}
	if c.Via == ViaBuiltin {
		if c.Plugin != "" {
			return fmt.Errorf("config: Plugin (--plugin) is not used with Via (--via) builtin: the driver is linked into the proxy (Builtin, --builtin, picks it; default: the backend's name)")
		}
		if c.Auth {
			return fmt.Errorf("config: Auth (--auth) is not supported with Via (--via) builtin yet: run it with --via proxy and a plugin binary")
		}
	} else if c.Plugin == "" {
		return fmt.Errorf("config: Plugin (--plugin) is required: the path to a plugin binary")
	}
	switch c.Topology {
	case "", TopologySingle:
	case TopologyCluster:
		if c.Backend != backend.Redis && c.Backend != backend.NATS || c.Backends.Definition != nil || c.Pattern != "" {
			return fmt.Errorf("config: Topology (--topology) cluster is for --backend redis or nats (no --backend-file, no --pattern)")
		}
		switch c.Backends.Provider {
		case backend.Auto, backend.Container, backend.Process:
		default:
			return fmt.Errorf("config: Topology (--topology) cluster needs --instance auto, container or process, not %s", c.Backends.Provider)
		}
		if c.Auth || c.Admin {
			return fmt.Errorf("config: Topology (--topology) cluster does not run with --auth or --admin")
		}
	default:
		return fmt.Errorf("config: Topology (--topology) %q is not single or cluster", c.Topology)
	}
	switch {
	case c.Backends.Definition != nil:
		if c.Backend != backend.Kind(c.Backends.Definition.Name) {
			return fmt.Errorf("config: Backend (--backend) %q is not the name %q of Backends.Definition (--backend-file %s)",
				c.Backend, c.Backends.Definition.Name, c.Backends.Definition.File)
		}
	case c.Backend == backend.Memstore, c.Backend == backend.Redis, c.Backend == backend.NATS:
	default:
		return fmt.Errorf("config: Backend (--backend) %q is not one of memstore, redis, nats", c.Backend)
	}
	switch c.Via {
	case target.Direct, target.Proxy, ViaBoth, ViaBuiltin:
	default:
		return fmt.Errorf("config: Via (--via) %q is not one of direct, proxy, both, builtin", c.Via)
	}
	return nil
}

// ViaBoth runs every data suite twice: directly and through the proxy.
const ViaBoth target.Via = "both"

// ViaBuiltin certifies a driver linked into prism-proxy: the data suites
// run through the proxy, whose namespace serves it as a builtin.
const ViaBuiltin target.Via = "builtin"

func (c Config) viaDirect() bool { return c.Via == target.Direct || c.Via == ViaBoth }
func (c Config) viaProxy() bool {
	return c.Via == target.Proxy || c.Via == ViaBoth || c.Via == ViaBuiltin
}

// builtinPlugin returns c with the plugin process of a builtin run: the
// proxy binary serving the driver (prism-proxy --serve-builtin NAME), for
// the lifecycle specs, which launch and signal a process.
func (c Config) builtinPlugin() Config {
	if c.Via != ViaBuiltin {
		return c
	}
	c.Plugin = c.ProxyBinary
	c.PluginArgs = []string{"--serve-builtin", c.Builtin}
	return c
}

// LinkedBuiltins asks the prism-proxy binary which drivers it links
// (prism-proxy --list-builtins).
func LinkedBuiltins(ctx context.Context, proxyBinary string) ([]string, error) {
	out, err := exec.CommandContext(ctx, proxyBinary, "--list-builtins").Output()
	if err != nil {
		return nil, fmt.Errorf("list the builtins of %s: %w", proxyBinary, err)
	}
	return strings.Fields(string(out)), nil
}

// inTreeBadConfigs are invalid configs for the reference plugins.
var inTreeBadConfigs = map[backend.Kind][]fixture.BadConfig{
	backend.Memstore: {
		{Name: "negative capacity", Config: map[string]any{"max_keys": -1}, Field: "max_keys"},
		{Name: "unknown field", Config: map[string]any{"max_keyz": 10}, Field: "max_keyz"},
		{Name: "wrong type", Config: map[string]any{"sweep_interval": 5}, Field: "sweep_interval"},
	},
	backend.Redis: {
		{Name: "missing address", Config: map[string]any{}, Field: "address"},
		{Name: "wrong type", Config: map[string]any{"address": "127.0.0.1:1", "pool_size": "ten"}, Field: "pool_size"},
	},
	backend.NATS: {
		{Name: "missing url", Config: map[string]any{}, Field: "url"},
		{Name: "wrong type", Config: map[string]any{"url": "nats://127.0.0.1:1", "ack_wait": 5}, Field: "ack_wait"},
		{Name: "unknown field", Config: map[string]any{"url": "nats://127.0.0.1:1", "subject_prefixx": "p"}, Field: "subject_prefixx"},
	},
}

// startBackend starts the instance of c.Backend with opts: one server, or a
// cluster when c.Topology is cluster.
func (c Config) startBackend(ctx context.Context, opts backend.Options) (backend.Instance, error) {
	if c.Topology == TopologyCluster {
		inst, err := cluster.Start(ctx, c.Backend, opts)
		if err != nil {
			return nil, err
		}
		return inst, nil
	}
	return backend.Start(ctx, c.Backend, opts)
}
