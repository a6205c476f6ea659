package acceptance

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/formatter"
	"github.com/onsi/ginkgo/v2/types"
	"github.com/onsi/gomega"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/acceptance/scaffold"
	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/backend/definition"
	"github.com/prism-suite/prism/harness/nemesis"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
)

const usage = `prism-accept certifies a Prism plugin: it starts the backend, launches the
plugin binary, runs the conformance suites against it and prints a verdict per
capability. Reports go to --report-dir.

Usage:
  prism-accept --plugin ./bin/my-plugin --backend redis [flags] [--ginkgo.* flags]
  prism-accept --plugin ./bin/prism-memstore --backend memstore --admin --label-filter admin   # the proxy's admin API
  prism-accept --pattern registry --registry-slot memstore|redis --messaging-slot memstore|nats|redis [flags]
  prism-accept new-plugin --lang go|python NAME   # write a new plugin (prism-accept new-plugin --help)
  prism-accept --robustness --plugin ./bin/prism-redis --backend redis [--nemesis kill,pause] [--duration 30s] [--via proxy]

Examples:
  prism-accept --plugin ./bin/prism-memstore --backend memstore
  prism-accept --plugin ./bin/prism-redis --backend redis --instance container --report-dir out/redis
  prism-accept --plugin ./bin/prism-redis --backend redis --label-filter keyvalue.ttl
  prism-accept --plugin ./bin/prism-memstore --via both --proxy ./bin/prism-proxy
  prism-accept --via builtin --backend redis --proxy ./bin/prism-proxy   # the redis driver linked into prism-proxy
  prism-accept --plugin ./my-plugin --backend redis --instance external   # PRISM_REDIS_ADDR=127.0.0.1:6379
  prism-accept --plugin ./bin/prism-redis --backend redis --auth --label-filter auth   # auth.*: proxy with auth on, ACL users
  prism-accept --pattern registry --registry-slot redis --messaging-slot nats   # the proxy's multicast registry
  prism-accept --plugin ./bin/my-plugin --backend-file backends/postgres/backend.yaml --instance container   # any backend (docs/backend-file.md)

Exit codes (one contract, report.Judge):
  0  something ran, nothing failed or errored, every required capability and
     every declared one the selection reached is certified
  1  a spec or capability failed, a required capability is not certified
     (whatever the reason), or the plugin could not launch, handshake or Describe
  2  nothing failed, but the harness could not judge something it was asked to:
     a harness error (e.g. the container did not start), or a declared
     capability whose selected specs were all skipped
  64 bad usage, or a label filter or focus that selects no spec this plugin
     can run
  130 (SIGINT), 143 (SIGTERM): interrupted. The first signal stops the run:
     the spec running is cut short, no other starts, the plugin, proxy and
     backend are stopped, every container of this run is removed, and the
     report (exit_reason "interrupted by SIGINT: ...") is written. A second
     signal exits at once; containers it leaves are removed by the next run.

At start, prism-accept removes the containers left by an earlier run on
this host whose process is gone (killed with SIGKILL); a live run's
containers are never touched.

Flags:
`

// Main is prism-accept: it parses args (Ginkgo's --ginkgo.* flags pass
// through), runs the suites once and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "new-plugin" {
		return scaffold.Main(args[1:], stdout, stderr)
	}
	fs := flag.CommandLine
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); printFlags(fs, stderr) }
	cfg := DefaultConfig()
	var (
		backendName  = fs.String("backend", "memstore", "backend the plugin talks to: memstore, redis or nats")
		instance     = fs.String("instance", "auto", "how the backend is provided: auto, container, process, embedded or external")
		via          = fs.String("via", "direct", "how the suites reach the plugin: direct, proxy (through prism-proxy), both, or builtin (certify a driver linked into prism-proxy: --builtin, no --plugin)")
		labelFilter  = fs.String("label-filter", "", "run only specs whose labels match, e.g. 'keyvalue.ttl' or 'keyvalue.basic || lifecycle'")
		require      = fs.String("require", "", "comma-separated capabilities the plugin must declare, e.g. keyvalue.ttl,keyvalue.scan")
		pluginConfig = fs.String("plugin-config", "", "JSON object merged over the plugin config the harness builds, e.g. '{\"pool_size\": 20}'")
		namespace    = fs.String("namespace", cfg.Namespace, "namespace the plugin is initialized for")
		repeat       = fs.Int("repeat", 1, "run every spec N times; a spec must pass every time (certification never retries a failed spec)")
		registrySlot = fs.String("registry-slot", "memstore", "with --pattern registry: the registry slot's backend, memstore or redis")
		messaging    = fs.String("messaging-slot", "memstore", "with --pattern registry: the messaging slot's backend, memstore, nats or redis")
	)
	robust := fs.Bool("robustness", false, "a robustness run instead of the suites: concurrent clients drive KeyValue (and durable PubSub) while --nemesis injects faults; histories are checked for linearizability (porcupine) and lost messages")
	nemesisKinds := fs.String("nemesis", "", "with --robustness: faults injected in turn, comma-separated: kill, pause, partition, kill-leader, or none (default: kill, none for memstore)")
	duration := fs.Duration("duration", 30*time.Second, "with --robustness: how long the workload and the nemesis run")
	clients := fs.Int("clients", 8, "with --robustness: concurrent KeyValue clients")
	keys := fs.Int("keys", 4, "with --robustness: size of the KeyValue key set")
	procs := fs.Int("procs", 1, "split the selected specs over N prism-accept processes, each with its own backend and plugin, merged into one report (the specs of one container stay in one process)")
	shardFile := fs.String("shard", "", "internal to --procs: the shard file of one of its processes")
	backendFile := fs.String("backend-file", "", "a backend definition file (backend.yaml, docs/backend-file.md) describing the backend: its name is the backend")
	fs.StringVar(&cfg.Topology, "topology", TopologySingle, "single, or cluster: a Redis Cluster (3 primaries + 3 replicas) or a NATS cluster (3 nodes, JetStream replicas 3), as containers on a network of their own or as processes (--instance container|process|auto); the cluster specs run only on it")
	fs.StringVar(&cfg.Pattern, "pattern", "", "certify a pattern of prism-proxy instead of a plugin: registry (the slots' plugins are bin/prism-<backend> next to --proxy)")
	fs.StringVar(&cfg.Plugin, "plugin", "", "path to the plugin binary to certify (required)")
	fs.Func("plugin-arg", "an argument for the plugin binary (repeatable), e.g. --plugin-arg=--mutant=lost-delete", func(v string) error {
		cfg.PluginArgs = append(cfg.PluginArgs, v)
		return nil
	})
	fs.Func("bad-config", "a YAML file of invalid plugin configs the lifecycle specs send, each with the field the plugin must name when it refuses it (a list of {name, config, field}); without it only the reference plugins have examples", func(v string) error {
		bad, err := LoadBadConfigs(v)
		cfg.BadConfigs = bad
		return err
	})
	fs.StringVar(&cfg.Builtin, "builtin", "", "with --via builtin: the driver linked into --proxy to certify (default: the --backend's name; prism-proxy --list-builtins lists them)")
	fs.StringVar(&cfg.ProxyBinary, "proxy", "bin/prism-proxy", "prism-proxy binary for --via proxy or both")
	fs.BoolVar(&cfg.Admin, "admin", false, "also certify the proxy's admin API: start a test OIDC issuer and two proxies (--proxy) with the admin API on, sharing an admin store; --label-filter admin runs only those specs")
	fs.BoolVar(&cfg.Auth, "auth", false, "also certify auth: start a test OIDC issuer, a proxy with auth on (--proxy) and backend users per namespace; --label-filter auth runs only those specs")
	fs.StringVar(&cfg.Issuer, "issuer", IssuerTest, "with --auth: the OIDC issuer the auth proxy trusts: test (an in-process issuer that mints any token) or dev-idp (prism-dev-idp, --dev-idp, as a process: tokens come from its device flow, the specs that need forged tokens skip)")
	fs.StringVar(&cfg.DevIdPBinary, "dev-idp", "bin/prism-dev-idp", "prism-dev-idp binary for --issuer dev-idp")
	fs.BoolVar(&cfg.ProbeUndeclared, "probe-undeclared", false, "also run the specs of undeclared capabilities, to report those that work but are not declared")
	fs.StringVar(&cfg.ReportDir, "report-dir", "", "folder for report.json, junit.xml and summary.md (default out/accept/<backend>)")
	fs.Int64Var(&cfg.Seed, "seed", cfg.Seed, "seed recorded in the report and used in resource names")
	fs.DurationVar(&cfg.Timeouts.Call, "timeout-call", cfg.Timeouts.Call, "deadline of one RPC")
	fs.DurationVar(&cfg.Timeouts.Handshake, "timeout-handshake", cfg.Timeouts.Handshake, "deadline for the plugin's handshake and health")
	fs.DurationVar(&cfg.Timeouts.Stop, "timeout-stop", cfg.Timeouts.Stop, "deadline for Stop and for exiting after stdin closes")
	fs.DurationVar(&cfg.Timeouts.Eventually, "timeout-eventually", cfg.Timeouts.Eventually, "deadline for eventual states (recovery, cleanup)")
	fs.DurationVar(&cfg.Backends.StartTimeout, "timeout-backend", cfg.Backends.StartTimeout, "deadline for starting the backend")
	otlpEndpoint := fs.String("otlp-endpoint", "", "trace every spec (and the plugin's and proxy's spans in it) to this OTLP/gRPC collector, e.g. http://127.0.0.1:4317; report.json carries each spec's trace_id (default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT; none: off)")
	if err := fs.Parse(args); err != nil {
		return report.ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "prism-accept: unexpected arguments %q (flags only; see --help)\n", fs.Args())
		return report.ExitUsage
	}
	cfg.Backend = backend.Kind(*backendName)
	if *backendFile != "" {
		if code := useBackendFile(&cfg, fs, *backendFile, stderr); code != 0 {
			return code
		}
		*backendName = string(cfg.Backend)
	}
	cfg.Backends.Provider = backend.Provider(*instance)
	cfg.Via = target.Via(*via)
	cfg.Namespace = *namespace
	cfg.RegistrySlot, cfg.MessagingSlot = backend.Kind(*registrySlot), backend.Kind(*messaging)
	if cfg.Pattern != "" {
		cfg.Via = target.Proxy
	}
	if cfg.ReportDir == "" {
		cfg.ReportDir = "out/accept/" + *backendName
		if cfg.Pattern == PatternRegistry {
			cfg.ReportDir = fmt.Sprintf("out/accept/registry-%s-%s", *registrySlot, *messaging)
		}
	}
	var err error
	if cfg.Require, err = capability.Parse(*require); err != nil {
		fmt.Fprintf(stderr, "prism-accept: --require: %v\n", err)
		return report.ExitUsage
	}
	if *pluginConfig != "" {
		if err := json.Unmarshal([]byte(*pluginConfig), &cfg.PluginConfig); err != nil {
			fmt.Fprintf(stderr, "prism-accept: --plugin-config: not a JSON object: %v\n", err)
			return report.ExitUsage
		}
	}
	if cfg.Via == ViaBuiltin {
		if cfg.Plugin != "" {
			fmt.Fprintf(stderr, "prism-accept: --plugin is not used with --via builtin: the driver is linked into %s (--builtin NAME picks it; default: the --backend's name)\n", cfg.ProxyBinary)
			return report.ExitUsage
		}
		if cfg.Builtin == "" {
			cfg.Builtin = string(cfg.Backend)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		known, err := LinkedBuiltins(ctx, cfg.ProxyBinary)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "prism-accept: --via builtin: %v (build it first, e.g. go tool task build)\n", err)
			return report.ExitUsage
		}
		if !slices.Contains(known, cfg.Builtin) {
			fmt.Fprintf(stderr, "prism-accept: --via builtin: %q is not a driver linked into %s; known: %s\n", cfg.Builtin, cfg.ProxyBinary, strings.Join(known, ", "))
			return report.ExitUsage
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "prism-accept: %v\n", err)
		return report.ExitUsage
	}
	if fi, err := os.Stat(cfg.Plugin); cfg.Pattern == "" && cfg.Via != ViaBuiltin && (err != nil || fi.IsDir() || fi.Mode()&0o111 == 0) {
		fmt.Fprintf(stderr, "prism-accept: --plugin %s is not an executable file (build it first, e.g. go tool task build)\n", cfg.Plugin)
		return report.ExitUsage
	}
	if *procs < 1 {
		fmt.Fprintf(stderr, "prism-accept: --procs %d: must be at least 1\n", *procs)
		return report.ExitUsage
	}
	cfg.Command, cfg.CommandLeftOut = commandLine(executable(), fs, os.Environ(), cfg)
	if *shardFile != "" {
		if cfg.Shard, err = loadShard(*shardFile); err != nil {
			fmt.Fprintf(stderr, "prism-accept: %v\n", err)
			return report.ExitUsage
		}
		cfg.Command, cfg.CommandLeftOut = cfg.Shard.Command, cfg.Shard.CommandLeftOut
	}
	cfg.Logf = func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	// testcontainers prints a banner through its global logger; progress
	// lines come from the harness instead, and errors are returned.
	tclog.SetDefault(tclog.NewNoopLogger())
	if *robust {
		ro, err := robustnessOptions(cfg, *nemesisKinds, *duration, *clients, *keys)
		if err != nil {
			fmt.Fprintf(stderr, "prism-accept: %v\n", err)
			return report.ExitUsage
		}
		fmt.Fprintf(stdout, "prism-accept: robustness of %s against %s (instance %s, via %s, nemesis %v, %v); reports in %s\n",
			cfg.Plugin, cfg.Backend, *instance, cfg.Via, ro.Nemesis, ro.Duration, cfg.ReportDir)
		if cfg.Backend != backend.Memstore && (cfg.Backends.Provider == backend.Auto || cfg.Backends.Provider == backend.Container) {
			sweepOrphans(cfg.Logf)
		}
		return Robustness(cfg, ro)
	}
	run := Register(cfg)
	gomega.RegisterFailHandler(Fail)
	suiteCfg, repCfg := GinkgoConfiguration()
	if *labelFilter != "" {
		suiteCfg.LabelFilter = *labelFilter
	}
	if _, err := types.ParseLabelFilter(suiteCfg.LabelFilter); err != nil {
		fmt.Fprintf(stderr, "prism-accept: --label-filter %q: %v\n", suiteCfg.LabelFilter, err)
		return report.ExitUsage
	}
	for _, f := range append(suiteCfg.FocusStrings, suiteCfg.SkipStrings...) {
		if _, err := regexp.Compile(f); err != nil {
			fmt.Fprintf(stderr, "prism-accept: focus or skip %q is not a regular expression: %v\n", f, err)
			return report.ExitUsage
		}
	}
	if _, err := types.ParseFileFilters(append(suiteCfg.FocusFiles, suiteCfg.SkipFiles...)); err != nil {
		fmt.Fprintf(stderr, "prism-accept: --ginkgo.focus-file or skip-file: %v\n", err)
		return report.ExitUsage
	}
	suiteCfg.RandomSeed = cfg.Seed
	if suiteCfg.FlakeAttempts > 0 {
		fmt.Fprintln(stderr, "prism-accept: --ginkgo.flake-attempts is refused: a certification run never retries a failed spec (use --repeat N to demand N passes)")
		return report.ExitUsage
	}
	if *repeat > 1 {
		suiteCfg.MustPassRepeatedly = *repeat
	}
	if cfg.Shard != nil {
		suiteCfg.FocusFiles = cfg.Shard.Locations
	}
	if !repCfg.Verbose && !repCfg.VeryVerbose {
		// Our progress lines and verdicts replace Ginkgo's dots; --ginkgo.v
		// brings Ginkgo's own output back.
		formatter.ColorableStdOut = io.Discard
	}
	if cfg.Pattern != "" {
		fmt.Fprintf(stdout, "prism-accept: certifying %s's %s pattern with slots registry=%s messaging=%s (instance %s); reports in %s\n",
			cfg.ProxyBinary, cfg.Pattern, cfg.RegistrySlot, cfg.MessagingSlot, *instance, cfg.ReportDir)
	} else if cfg.Via == ViaBuiltin {
		fmt.Fprintf(stdout, "prism-accept: certifying the builtin driver %s of %s against %s (instance %s); reports in %s\n",
			cfg.Builtin, cfg.ProxyBinary, cfg.Backend, *instance, cfg.ReportDir)
	} else {
		fmt.Fprintf(stdout, "prism-accept: certifying %s against %s (instance %s, via %s); reports in %s\n",
			cfg.Plugin, cfg.Backend, *instance, cfg.Via, cfg.ReportDir)
	}
	if cfg.Pattern != "" || (cfg.Backend != backend.Memstore && (cfg.Backends.Provider == backend.Auto || cfg.Backends.Provider == backend.Container)) {
		sweepOrphans(cfg.Logf)
	}
	if *procs > 1 && cfg.Shard == nil {
		if code := runProcs(run, *procs, args, suiteCfg, stdout, stderr); code >= 0 {
			return code
		}
	}
	stopTracing, err := startTracing(*otlpEndpoint)
	if err != nil {
		fmt.Fprintf(stderr, "prism-accept: %v\n", err)
		return report.ExitUsage
	}
	defer stopTracing()
	stopSignals := run.handleSignals(stderr)
	defer stopSignals()
	RunSpecs(&testingT{}, SuiteDescription, suiteCfg, repCfg)
	if sig := run.Interrupted(); sig != nil {
		// Teardown removed what setup recorded; a setup cut short may
		// have created a container after that.
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.Stop*2)
		if n, err := backend.SweepRun(ctx); err != nil || n > 0 {
			cfg.Logf("backend: removed %d more containers of this run (%v)", n, err)
		}
		cancel()
		if run.Report == nil {
			return ExitInterrupted(sig)
		}
	}
	if run.Report == nil {
		return report.ExitError
	}
	return run.Report.ExitCode
}

// robustnessOptions checks the flags of a robustness run.
func robustnessOptions(cfg Config, kinds string, d time.Duration, clients, keys int) (RobustnessOptions, error) {
	o := RobustnessOptions{Duration: d, Clients: clients, Keys: keys}
	if cfg.Via != target.Direct && cfg.Via != target.Proxy {
		return o, fmt.Errorf("--robustness runs --via direct or proxy, not %s", cfg.Via)
	}
	if cfg.Pattern != "" || cfg.Auth || cfg.Admin {
		return o, errors.New("--robustness certifies a plugin: not with --pattern, --auth or --admin")
	}
	if d <= 0 || clients < 1 || keys < 1 {
		return o, fmt.Errorf("--duration, --clients and --keys must be positive (got %v, %d, %d)", d, clients, keys)
	}
	if kinds == "" {
		kinds = "kill"
		if cfg.Backend == backend.Memstore {
			kinds = "none"
		}
	}
	if kinds != "none" {
		k, err := nemesis.ParseKinds(kinds)
		if err != nil {
			return o, fmt.Errorf("--nemesis: %w", err)
		}
		o.Nemesis = k
	}
	return o, nil
}

// sweepOrphans removes the containers of earlier runs on this host whose
// process is gone (backend.Sweep), within a few seconds.
func sweepOrphans(logf func(string, ...any)) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	n, err := backend.Sweep(ctx)
	if err != nil {
		logf("backend: removing containers left by killed runs: %v", err)
	}
	if n > 0 {
		logf("backend: removed %d containers left by earlier runs that were killed", n)
	}
}

// ExitInterrupted is prism-accept's exit code after sig: 128 + its number,
// as shells report a process killed by it (130 for SIGINT, 143 for SIGTERM).
func ExitInterrupted(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 128 + int(syscall.SIGINT)
}

func sigName(sig os.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}

// Interrupted returns the first SIGINT or SIGTERM the run got, or nil.
func (r *Session) Interrupted() os.Signal {
	r.intMu.Lock()
	defer r.intMu.Unlock()
	return r.signal
}

// interrupt records the first interrupt and cuts a setup in progress short.
// Ginkgo, which gets the same signal, interrupts the spec running, skips the
// others and runs teardown and the report.
func (r *Session) interrupt(sig os.Signal) {
	r.intMu.Lock()
	first := r.signal == nil
	if first {
		r.signal = sig
	}
	r.intMu.Unlock()
	if first {
		r.cancelStop()
		// Ginkgo stops waiting for the spec it interrupts, but its body
		// goes on in its goroutine; were its calls to keep succeeding, it
		// would reach a DeferCleanup while Ginkgo runs a report or cleanup
		// node, which Ginkgo answers with os.Exit(1): no report, no
		// teardown. So the plugin under test is killed at once (its calls
		// fail and the body unwinds), and the harness's launchers park
		// such a body for good (park).
		select {
		case <-r.setupDone:
			if r.proc != nil {
				r.proc.Kill()
			}
		default: // setup still runs: its context is cancelled
		}
	}
}

// park blocks the goroutine of a spec body that outlived an interrupt for
// good, so that it never gets back to Ginkgo (see interrupt); the process
// exits when the run is over.
func (r *Session) park() { select {} }

// handleSignals makes the first SIGINT or SIGTERM stop the run cleanly and
// a second one exit at once. It returns a function that stops handling them.
func (r *Session) handleSignals(stderr io.Writer) func() {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			fmt.Fprintf(stderr, "\nprism-accept: %s: stopping the run, removing its containers and processes, writing the report (again to exit at once)\n", sigName(sig))
			r.interrupt(sig)
		case <-done:
			return
		}
		select {
		case sig := <-ch:
			fmt.Fprintf(stderr, "prism-accept: second %s: exiting now; the next run removes the containers left (plugins exit with their parent)\n", sigName(sig))
			os.Exit(ExitInterrupted(sig))
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// useBackendFile loads a backend definition file into cfg; a file that
// cannot be read or is not valid is bad usage (64).
func useBackendFile(cfg *Config, fs *flag.FlagSet, path string, stderr io.Writer) int {
	def, err := definition.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "prism-accept: --backend-file: %v\n", err)
		return report.ExitUsage
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "backend" })
	if explicit && string(cfg.Backend) != def.Name {
		fmt.Fprintf(stderr, "prism-accept: --backend %s and --backend-file %s (backend %s) disagree; give one\n", cfg.Backend, path, def.Name)
		return report.ExitUsage
	}
	cfg.Backend, cfg.Backends.Definition = backend.Kind(def.Name), def
	return 0
}

func printFlags(fs *flag.FlagSet, w io.Writer) {
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "ginkgo.") || strings.HasPrefix(f.Name, "test.") {
			return
		}
		def := ""
		if f.DefValue != "" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  --%s\n      %s%s\n", f.Name, f.Usage, def)
	})
	fmt.Fprintln(w, "\nGinkgo's flags pass through with their ginkgo. prefix, e.g. --ginkgo.focus, --ginkgo.v, --ginkgo.fail-fast.")
}

// testingT satisfies Ginkgo's GinkgoTestingT outside `go test`.
type testingT struct{ failed bool }

func (t *testingT) Fail() { t.failed = true }

var _ GinkgoTestingT = (*testingT)(nil)
