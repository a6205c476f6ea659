package acceptance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/plugin"
	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	"github.com/prism-suite/prism/proto/handshake"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	adminsuite "github.com/prism-suite/prism/suites/admin"
	authsuite "github.com/prism-suite/prism/suites/auth"
	"github.com/prism-suite/prism/suites/fixture"
	"github.com/prism-suite/prism/suites/keyvalue"
	"github.com/prism-suite/prism/suites/lifecycle"
	proxysuite "github.com/prism-suite/prism/suites/proxy"
	"github.com/prism-suite/prism/suites/pubsub"
)

// RootText is the text of the container every acceptance spec lives in.
const RootText = "Prism acceptance"

// ViaProxyText is the text of the container of the specs that run through
// the proxy (with --via proxy or both); specs outside it run directly.
const ViaProxyText = "via proxy"

// Session is one registered acceptance run: its config, the plugin and backend
// it set up, and (after the suite) its report.
type Session struct {
	cfg   Config
	start time.Time

	inst    backend.Instance
	proc    *plugin.Process
	desc    *lifecyclev1.DescribeResponse
	sha     string
	fx      *fixture.Fixture
	infra   error // harness error during setup: every spec reports error
	failure error // plugin failure during setup: every spec fails

	px       *hproxy.Proxy    // the proxy, with --via proxy or both
	pfx      *fixture.Fixture // the fixture whose target goes through px
	proxyErr error            // the proxy did not start: every via-proxy spec reports error
	auth     *authRun         // with --auth (auth.go)
	admin    *adminRun        // with --admin (admin.go)

	// Interrupts (main.go): stop is cancelled by the first SIGINT or
	// SIGTERM, which cuts a setup short; setupDone is closed when setup
	// returns, so that teardown sees what it started.
	stop       context.Context
	cancelStop context.CancelFunc
	setupDone  chan struct{}
	setupOnce  sync.Once
	intMu      sync.Mutex
	signal     os.Signal // the first interrupt, nil when there was none

	// previewing is set while a --procs parent previews the suite: the
	// report nodes write and print nothing.
	previewing bool
	// judged is what the report was judged on (report.Run), for judge.json.
	judged report.Run

	// Report is set by WriteReports.
	Report *report.Report
}

// Register registers the acceptance specs at the top level of a Ginkgo
// suite, plus a progress line per spec and a ReportAfterSuite that writes
// the report files into cfg.ReportDir and prints the verdicts. Call it once,
// at the top level (var _ = acceptance.Register(cfg)). The config is copied
// at registration; the plugin and backend start when the first spec runs.
func Register(cfg Config) *Session {
	r := Specs(cfg)
	ReportAfterEach(r.progress)
	ReportAfterSuite("Prism report", func(rep types.Report) {
		if r.previewing {
			return // a --procs parent's preview (procs.go): nothing ran
		}
		if err := r.WriteReports(rep); err != nil {
			fmt.Fprintln(os.Stderr, "prism-accept:", unwritten(r.Report, err))
		}
	})
	return r
}

// Specs registers only the specs, in an Ordered container named RootText,
// so a plugin author can nest them in their own Describe. Call
// [Session.WriteReports] from your own ReportAfterSuite to get report files.
func Specs(cfg Config) *Session {
	r := &Session{cfg: cfg.clone(), setupDone: make(chan struct{})}
	r.stop, r.cancelStop = context.WithCancel(context.Background())
	if r.cfg.Pattern == PatternRegistry {
		r.registrySpecs()
		return r
	}
	Describe(RootText, Ordered, ContinueOnFailure, func() {
		BeforeAll(r.setup)
		AfterAll(r.teardown)
		BeforeEach(traceSpec)
		lifecycle.Register(r.fixture) // lifecycle specs always run directly
		if r.cfg.viaDirect() {
			dataSuites(r.fixture)
		}
		if r.cfg.viaProxy() {
			Describe(ViaProxyText, Label("via:proxy"), func() {
				dataSuites(r.proxyFixture)
				proxysuite.Register(r.proxyFixture)
			})
		}
		if r.cfg.Auth {
			authsuite.Register(r.authFixture)
		}
		if r.cfg.Admin {
			adminsuite.Register(r.adminFixture)
		}
	})
	return r
}

// dataSuites registers the data suites, which run directly, through the
// proxy, or both.
func dataSuites(p fixture.Provider) {
	keyvalue.Register(p)
	pubsub.Register(p)
}

// proxyFixture is the provider of the specs that run through the proxy.
func (r *Session) proxyFixture() *fixture.Fixture {
	GinkgoHelper()
	r.fixture()
	if r.proxyErr != nil {
		fixture.HarnessFail(r.proxyErr)
	}
	return r.pfx
}

// fixture is the provider the suites call in each spec.
func (r *Session) fixture() *fixture.Fixture {
	GinkgoHelper()
	if r.Interrupted() != nil {
		r.park()
	}
	if r.infra != nil {
		fixture.HarnessFail(r.infra)
	}
	if r.failure != nil {
		Fail("plugin setup failed: " + r.failure.Error())
	}
	return r.fx
}

func (r *Session) setup() {
	defer r.setupOnce.Do(func() { close(r.setupDone) })
	r.start = time.Now()
	if err := r.cfg.Validate(); err != nil {
		r.infra = err
		return
	}
	// A builtin run's plugin process is the proxy binary serving the
	// driver; its digest is the plugin's identity.
	r.cfg = r.cfg.builtinPlugin()
	// An interrupt cancels the setup: a container or plugin half started is
	// then in r.inst or r.proc for teardown, or swept (Main).
	ctx, cancel := context.WithTimeout(r.stop, r.cfg.Backends.StartTimeout+r.cfg.Timeouts.Handshake+r.cfg.Timeouts.Call)
	defer cancel()
	log := r.cfg.Logf

	var err error
	if r.sha, err = plugin.FileSHA256(r.cfg.Plugin); err != nil {
		r.infra = err
		return
	}
	opts := r.cfg.authBackend(r.cfg.Backends)
	opts.Logf = log
	r.inst, err = r.cfg.startBackend(ctx, opts)
	if err != nil {
		r.infra = fmt.Errorf("start %s backend: %w", r.cfg.Backend, err)
		return
	}
	info := r.inst.Info()
	log("backend: %s via %s %s %s", info.Kind, info.Provider, info.Image, info.Reason)

	init, err := r.initRequest()
	if err != nil {
		r.infra = err
		return
	}
	r.proc, err = plugin.Launch(ctx, r.cfg.Plugin, r.pluginOptions())
	if err != nil {
		r.failure = fmt.Errorf("launch %s: %w", r.cfg.Plugin, err)
		return
	}
	log("plugin: %s started, SERVING after %v (pid %d, %s)", r.cfg.Plugin, r.proc.ReadyTime.Round(time.Millisecond), r.proc.PID(), r.proc.Handshake.Network)
	r.desc, err = r.proc.Setup(ctx, init)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			r.failure = fmt.Errorf("set up plugin within %v: %w", r.cfg.Timeouts.Call, err)
		} else {
			r.failure = fmt.Errorf("set up plugin: %w", err)
		}
		return
	}
	declared := make([]string, 0, len(r.desc.GetCapabilities()))
	for _, c := range r.desc.GetCapabilities() {
		declared = append(declared, c.GetName())
	}
	log("plugin: %s %s declares %s", r.desc.GetName(), r.desc.GetVersion(), strings.Join(declared, ", "))

	bad := r.cfg.BadConfigs
	reference := r.desc.GetName() == string(r.cfg.Backend)
	if def := r.cfg.Backends.Definition; len(bad) == 0 && def != nil && len(def.Plugin.BadConfigs) > 0 && (def.Go == "" || reference) {
		// A backend file's examples follow the config its plugin section
		// passes (a built-in's file: its reference plugin's only).
		for _, b := range def.Plugin.BadConfigs {
			bad = append(bad, fixture.BadConfig{Name: b.Name, Config: b.Config, Field: b.Field})
		}
	}
	if len(bad) == 0 && reference {
		// The reference plugin of this backend (or a mutant of it): the
		// examples follow its config schema, which another plugin of the
		// same backend need not share (it gives --bad-config).
		bad = inTreeBadConfigs[r.cfg.Backend]
	}
	r.fx = &fixture.Fixture{
		Target:      target.Target{Via: target.Direct, Namespace: r.cfg.Namespace, Conn: r.proc.Conn},
		Description: r.desc,
		Lifecycle:   r.proc.Lifecycle,
		Launch:      r.launch,
		BadConfigs:  bad,
		Backend:     r.inst,
		Timeouts:    r.cfg.Timeouts,
		RunID:       fmt.Sprintf("%d-%d", r.cfg.Seed, time.Now().UnixNano()%1_000_000),
		PluginPID:   r.proc.PID(),

		ProbeUndeclared: r.cfg.ProbeUndeclared,

		// A fresh instance like r.inst (same provider), for a spec that
		// takes its backend down or pauses it.
		StartBackend: func(ctx context.Context) (backend.Instance, error) {
			o := opts
			o.Provider = info.Provider
			inst, err := r.cfg.startBackend(ctx, o)
			if r.Interrupted() != nil && inst != nil {
				_ = inst.Close(context.Background())
				r.park()
			}
			return inst, err
		},
	}
	if r.cfg.viaProxy() {
		r.setupProxy()
	}
	if r.cfg.Auth {
		r.setupAuth()
	}
	if r.cfg.Admin {
		r.setupAdmin()
	}
}

// proxyNamespaces are the namespaces the proxy serves: the one under test,
// and a second one with a plugin process (and, for redis, a key prefix) of
// its own for the isolation spec.
func (r *Session) proxyNamespaces() ([]hproxy.Namespace, error) {
	init, err := r.initRequest()
	if err != nil {
		return nil, err
	}
	ns := hproxy.Namespace{Name: r.cfg.Namespace, Plugin: r.cfg.Plugin, Args: r.cfg.PluginArgs,
		Config: init.GetConfig().AsMap(), Credentials: init.GetCredentials()}
	if r.cfg.Via == ViaBuiltin {
		ns.Plugin, ns.Args, ns.Builtin = "", nil, r.cfg.Builtin
	}
	// The namespace serves every pattern the plugin declares the basics of.
	declared := r.fx.Declared()
	for _, p := range []string{"keyvalue", "pubsub"} {
		if declared.Has(capability.Name(p + ".basic")) {
			ns.Patterns = append(ns.Patterns, p)
		}
	}
	iso := ns
	iso.Name, iso.Instance = r.cfg.Namespace+"-isolated", "isolated"
	iso.Config = map[string]any{}
	for k, v := range ns.Config {
		iso.Config[k] = v
	}
	switch r.cfg.Backend {
	case backend.Redis:
		iso.Config["key_prefix"] = "prism-isolated:"
	case backend.NATS: // subjects, stream and bucket of its own on the shared server
		iso.Config["subject_prefix"], iso.Config["stream"], iso.Config["payload_bucket"] = "prismisolated", "PRISM_ISOLATED", "PRISM_ISOLATED_PAYLOADS"
	}
	nss := []hproxy.Namespace{ns, iso}
	if len(ns.Patterns) > 1 {
		// The same plugin block as iso (one process), serving keyvalue
		// alone: the wrong-pattern spec sends it a PubSub call.
		single := iso
		single.Name, single.Patterns = singleServiceNamespace(r.cfg.Namespace), []string{"keyvalue"}
		nss = append(nss, single)
	}
	return nss, nil
}

// singleServiceNamespace names the namespace that serves one pattern of a
// plugin declaring several.
func singleServiceNamespace(ns string) string { return ns + "-keyvalue-only" }

// launchProxy starts a proxy for the plugin under test and waits until its
// namespace serves.
func (r *Session) launchProxy(ctx context.Context) (*hproxy.Proxy, error) {
	if r.Interrupted() != nil {
		r.park()
	}
	nss, err := r.proxyNamespaces()
	if err != nil {
		return nil, err
	}
	o := hproxy.DefaultOptions()
	o.Binary = r.cfg.ProxyBinary
	o.Env = r.cfg.PluginEnv
	o.DrainTimeout = r.cfg.Timeouts.Stop
	px, err := hproxy.Start(ctx, o, nss...)
	if err != nil {
		return px, err
	}
	if err := px.WaitServing(ctx, r.cfg.Namespace); err != nil {
		return px, fmt.Errorf("proxy namespace %q: %w; proxy stderr:\n%s", r.cfg.Namespace, err, handshake.TruncateTail(px.Stderr(), stderrInReports))
	}
	return px, nil
}

func (r *Session) setupProxy() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeouts.Handshake+r.cfg.Timeouts.Eventually)
	defer cancel()
	var err error
	r.px, err = r.launchProxy(ctx)
	if err != nil {
		r.proxyErr = fmt.Errorf("start prism-proxy %s: %w", r.cfg.ProxyBinary, err)
		return
	}
	r.cfg.Logf("proxy: %s serving %s at %s after %v", r.cfg.ProxyBinary, r.cfg.Namespace, r.px.Addr, r.px.ReadyTime.Round(time.Millisecond))
	fx := r.fx
	r.pfx = &fixture.Fixture{
		Target: r.px.Target(r.cfg.Namespace), Description: fx.Description, Lifecycle: fx.Lifecycle, Launch: fx.Launch,
		BadConfigs: fx.BadConfigs, Backend: fx.Backend, StartBackend: fx.StartBackend, Timeouts: fx.Timeouts, RunID: fx.RunID + "-proxy",
		Proxy: r.px, IsolatedNamespace: r.cfg.Namespace + "-isolated", LaunchProxy: r.launchProxy,
	}
	if d := fx.Declared(); d.Has(capability.KeyValueBasic) && d.Has(capability.PubSubBasic) {
		r.pfx.SingleServiceNamespace = singleServiceNamespace(r.cfg.Namespace)
	}
}

func (r *Session) pluginOptions() plugin.Options {
	o := plugin.DefaultOptions()
	o.Args = r.cfg.PluginArgs
	o.Env = r.cfg.PluginEnv
	o.HandshakeTimeout = r.cfg.Timeouts.Handshake
	o.StopGrace = r.cfg.Timeouts.Stop
	return o
}

// initRequest builds the Initialize request: the instance's config with the
// run's PluginConfig merged over it.
func (r *Session) initRequest() (*lifecyclev1.InitializeRequest, error) {
	values, creds := r.inst.PluginConfig()
	merged := map[string]any{}
	for k, v := range values {
		merged[k] = v
	}
	for k, v := range r.cfg.PluginConfig {
		merged[k] = v
	}
	cfg, err := structpb.NewStruct(merged)
	if err != nil {
		return nil, fmt.Errorf("encode plugin config: %w", err)
	}
	return &lifecyclev1.InitializeRequest{Config: cfg, Credentials: creds, Namespace: r.cfg.Namespace}, nil
}

// launch starts another process of the plugin under test (lifecycle specs).
func (r *Session) launch(ctx context.Context) (*plugin.Process, *lifecyclev1.InitializeRequest, error) {
	init, err := r.initRequest()
	if err != nil {
		return nil, nil, err
	}
	p, err := plugin.Launch(ctx, r.cfg.Plugin, r.pluginOptions())
	if r.Interrupted() != nil && p != nil {
		p.Kill()
		r.park()
	}
	return p, init, err
}

func (r *Session) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeouts.Stop*2)
	defer cancel()
	if r.Interrupted() != nil {
		// Ginkgo stopped waiting for an interrupted setup, which returns
		// soon (its context is cancelled): wait for it, so that what it
		// started is closed below.
		select {
		case <-r.setupDone:
		case <-ctx.Done():
		}
	}
	r.teardownAuth(ctx)
	r.teardownAdmin(ctx)
	if r.px != nil {
		if err := r.px.Stop(ctx); err != nil {
			r.cfg.Logf("proxy: %v", err)
		}
	}
	if r.proc != nil {
		if err := r.proc.Stop(ctx); err != nil {
			r.cfg.Logf("plugin: %v", err)
		}
	}
	if r.inst != nil {
		if err := r.inst.Close(ctx); err != nil {
			r.cfg.Logf("backend: close: %v", err)
		}
	}
}

// progress prints one line per finished spec.
func (r *Session) progress(sr SpecReport) {
	if sr.LeafNodeType != types.NodeTypeIt || r.previewing {
		return
	}
	o, reason := outcomeOf(sr)
	if o == report.Disabled {
		return
	}
	label := string(o)
	if c := probeOf(sr); c != "" {
		// A probe of an undeclared capability never fails the run.
		label = "probe " + map[bool]string{true: "ok", false: "✗"}[o == report.Passed]
		reason = c + " is not declared"
	}
	line := fmt.Sprintf("%-8s %s (%v)", label, specName(sr), sr.RunTime.Round(time.Millisecond))
	if o == report.Skipped || label == "probe ✗" {
		line += " — " + reason
	}
	r.cfg.Logf("%s", line)
}

func specName(sr SpecReport) string {
	return strings.TrimPrefix(sr.FullText(), RootText+" ")
}

func suiteOf(sr SpecReport) string {
	texts := sr.ContainerHierarchyTexts
	if len(texts) > 2 && texts[1] == ViaProxyText {
		return texts[2]
	}
	if len(texts) > 1 {
		return texts[1]
	}
	return ""
}

// viaOf says how a spec reached the plugin.
func viaOf(sr SpecReport) target.Via {
	if len(sr.ContainerHierarchyTexts) > 1 && sr.ContainerHierarchyTexts[1] == ViaProxyText {
		return target.Proxy
	}
	return target.Direct
}

// outcomeOf maps a Ginkgo spec report to an outcome and reason.
func outcomeOf(sr SpecReport) (report.Outcome, string) {
	msg := sr.Failure.Message
	if msg == "" && sr.Failure.ForwardedPanic != "" {
		msg = "panic: " + sr.Failure.ForwardedPanic
	}
	switch {
	case sr.State == types.SpecStatePassed:
		return report.Passed, ""
	case sr.State == types.SpecStatePending:
		return report.Disabled, "pending"
	case sr.State == types.SpecStateSkipped && msg == "":
		return report.Disabled, "excluded by the label filter or focus"
	case sr.State == types.SpecStateSkipped:
		return report.Skipped, msg
	}
	for _, e := range sr.ReportEntries {
		if e.Name == fixture.ReportEntryOutcome && e.StringRepresentation() == fixture.OutcomeError {
			return report.Error, msg
		}
	}
	if sr.State == types.SpecStateInterrupted || sr.State == types.SpecStateAborted {
		return report.Error, sr.State.String() + ": " + msg
	}
	return report.Failed, msg
}

// probeOf returns the capability a spec probed, or "".
func probeOf(sr SpecReport) string {
	for _, e := range sr.ReportEntries {
		if e.Name == fixture.ReportEntryProbe {
			return e.StringRepresentation()
		}
	}
	return ""
}

// reportHead is what a suite run's report and a robustness run's share:
// the run's identity (versions, seed, command), the backend, the plugin as
// it was run (a process, or a driver of the proxy) with what it described
// of itself and the tail of its stderr, and the proxy. It returns the
// capabilities the plugin declared (the proxy's own, which a robustness run
// does not judge, are added by BuildReport).
func (r *Session) reportHead(start time.Time, command string) (*report.Report, capability.Set) {
	rep := &report.Report{
		Schema:       report.SchemaVersion,
		SuiteVersion: SuiteVersion,
		GitCommit:    gitCommit(),
		StartTime:    start,
		Seed:         r.cfg.Seed,
		Via:          string(r.cfg.Via),
		Command:      command,
		Backend:      backendInfoOf(r.cfg),
		Timeouts: map[string]string{"call": r.cfg.Timeouts.Call.String(), "handshake": r.cfg.Timeouts.Handshake.String(),
			"stop": r.cfg.Timeouts.Stop.String(), "eventually": r.cfg.Timeouts.Eventually.String()},
		Plugin:         report.Plugin{Binary: r.cfg.Plugin, SHA256: r.sha, Mode: report.ModeProcess},
		CommandLeftOut: r.cfg.CommandLeftOut,
	}
	if r.cfg.Via == ViaBuiltin {
		// The plugin is a driver linked into the proxy: the proxy binary
		// (and its digest) identifies it.
		rep.Plugin.Mode, rep.Plugin.Builtin = report.ModeBuiltin, r.cfg.Builtin
		rep.Plugin.Binary = r.cfg.ProxyBinary
		if rep.Plugin.SHA256 == "" {
			rep.Plugin.SHA256, _ = plugin.FileSHA256(r.cfg.ProxyBinary)
		}
	}
	if r.inst != nil {
		rep.Backend = r.inst.Info()
	}
	if r.cfg.viaProxy() {
		rep.Proxy = &report.Proxy{Binary: r.cfg.ProxyBinary}
		rep.Proxy.SHA256, _ = plugin.FileSHA256(r.cfg.ProxyBinary) // "" when unreadable: the run says why the proxy failed
		if r.px != nil {
			rep.Proxy.Version = r.px.Version
		}
	}
	declared := capability.Declared(r.desc)
	if r.desc != nil {
		rep.Plugin.Name, rep.Plugin.Version, rep.Plugin.Info = r.desc.GetName(), r.desc.GetVersion(), r.desc.GetInfo()
		for _, c := range r.desc.GetCapabilities() {
			rep.Plugin.Declared = append(rep.Plugin.Declared, c.GetName())
		}
	}
	if r.proc != nil {
		rep.Plugin.SpawnToServingMS = float64(r.proc.ReadyTime.Microseconds()) / 1000
		rep.Plugin.StderrTail = handshake.TruncateTail(r.proc.Stderr(), stderrInReports)
	} else if r.px != nil { // a pattern run or a builtin: the proxy's stderr holds its plugins' too
		rep.Plugin.SpawnToServingMS = float64(r.px.ReadyTime.Microseconds()) / 1000
		rep.Plugin.StderrTail = handshake.TruncateTail(r.px.Stderr(), stderrInReports)
	}
	return rep, declared
}

// BuildReport turns the suite's Ginkgo report into a Prism report.
func (r *Session) BuildReport(gr types.Report) *report.Report {
	rep, declared := r.reportHead(gr.StartTime, runCommand(r.cfg.Command, gr.SuiteConfig, r.commandReportDir()))
	rep.DurationMS, rep.LabelFilter = gr.RunTime.Milliseconds(), gr.SuiteConfig.LabelFilter
	if r.desc != nil {
		for _, c := range capability.ProxyCapabilities {
			if r.proxyDeclares(c) {
				declared[c] = true
			}
		}
	}
	for _, sr := range gr.SpecReports {
		if sr.LeafNodeType != types.NodeTypeIt {
			continue
		}
		o, reason := outcomeOf(sr)
		s := report.Spec{
			Suite: suiteOf(sr), Capability: string(fixture.CapabilityOf(sr.Labels())), Name: specName(sr),
			Outcome: o, Reason: reason, Location: sr.LeafNodeLocation.String(),
			DurationMS: float64(sr.RunTime.Microseconds()) / 1000, Labels: sr.Labels(), Via: string(viaOf(sr)),
		}
		for _, e := range sr.ReportEntries {
			if e.Name == reportEntryTraceID {
				s.TraceID = e.StringRepresentation()
			}
			if strings.HasPrefix(e.Name, fixture.ReportEntryNemesis) {
				s.Nemesis = append(s.Nemesis, e.Name+": "+e.StringRepresentation())
			}
			if e.Name == fixture.ReportEntryCleanup {
				s.Cleanup = append(s.Cleanup, e.StringRepresentation())
				if o == report.Failed || o == report.Error {
					s.Reason += "\nthen, in cleanup: " + e.StringRepresentation()
				}
			}
		}
		if c := probeOf(sr); c != "" {
			s.Probe = true
			if o == report.Failed || o == report.Error {
				s.Outcome, s.Reason = report.Skipped, c+" is not declared by this plugin; probed, it failed: "+reason
			}
		}
		s.Reason = handshake.Truncate(s.Reason, messageInReports) // after every addition, probes' too
		s.Reproduce = reproduceCommand(r.cfg.Command, sr, r.commandReportDir())
		rep.Specs = append(rep.Specs, s)
		rep.Totals.Add(s.Outcome)
	}
	run := report.Run{Described: r.desc != nil, Declared: declared, Required: r.cfg.Require,
		Selection: selectionOf(gr.SuiteConfig), Setup: r.setupFailure(), Specs: rep.Specs}
	rep.Capabilities, rep.ExitCode, rep.ExitReason = report.Judge(run)
	r.judged = run
	if sig := r.Interrupted(); sig != nil {
		markInterrupted(rep, sig)
	}
	for i, c := range rep.Capabilities {
		if c.Declared && c.Reason == "" && r.proxyDeclares(capability.Name(c.Name)) {
			rep.Capabilities[i].Reason = proxyDeclaresReason
			if capability.Name(c.Name) == capability.AdminNamespaces {
				rep.Capabilities[i].Reason = proxyDeclaresAdminReason
			}
		}
	}
	r.redact(rep)
	return rep
}

// backendInfoOf is what a report says of the backend before one started.
func backendInfoOf(cfg Config) backend.Info {
	info := backend.Info{Kind: cfg.Backend}
	if def := cfg.Backends.Definition; def != nil {
		info.File = def.File
	}
	return info
}

// proxyDeclaresReason is the reason of a capability the reference proxy
// declares (with --auth), not the plugin.
const proxyDeclaresReason = "the reference proxy's (--auth)"

// proxyDeclaresAdminReason is the reason of admin.namespaces, which the
// reference proxy declares with --admin.
const proxyDeclaresAdminReason = "the reference proxy's (--admin)"

// markInterrupted makes rep say the run was interrupted by sig: whatever the
// specs that ran say, the run is not a verdict.
func markInterrupted(rep *report.Report, sig os.Signal) {
	rep.ExitCode = ExitInterrupted(sig)
	rep.ExitReason = fmt.Sprintf("interrupted by %s: the run stopped early (the specs after the interrupt did not run); %d passed, %d failed or errored before it", sigName(sig), rep.Totals.Passed, rep.Totals.Failed+rep.Totals.Errors)
	for i, c := range rep.Capabilities {
		if c.Verdict == report.NotTested && c.Passed+c.Failed+c.Skipped+c.Errors == 0 {
			rep.Capabilities[i].Reason = "not reached: the run was interrupted by " + sigName(sig)
		}
	}
}

// commandReportDir is the report folder commands in the report name: the
// run's, or with --shard the --procs parent's.
func (r *Session) commandReportDir() string {
	if r.cfg.Shard != nil {
		return r.cfg.Shard.ReportDir
	}
	return r.cfg.ReportDir
}

// setupFailure says why setup failed (nil when it did not): the harness's
// trouble is an error, the plugin's (or, in a pattern run, the proxy's) a
// failure of lifecycle, with the end of its stderr.
func (r *Session) setupFailure() *report.SetupFailure {
	switch {
	case r.infra != nil:
		return &report.SetupFailure{Outcome: report.Error, Message: handshake.Truncate("harness: "+r.infra.Error(), messageInReports)}
	case r.failure != nil:
		msg := r.failure.Error()
		if r.proc != nil && !strings.Contains(msg, "stderr:") {
			msg += "; stderr:\n" + handshake.TruncateTail(r.proc.Stderr(), stderrInReports)
		}
		return &report.SetupFailure{Outcome: report.Failed, Message: handshake.Truncate(msg, messageInReports)}
	}
	return nil
}

// selectionOf describes what a suite config selects, for messages: the
// label filter, focus and skip ("" when it selects everything).
func selectionOf(c types.SuiteConfig) string {
	var parts []string
	add := func(what string, vs ...string) {
		for _, v := range vs {
			if v != "" {
				parts = append(parts, fmt.Sprintf("%s %q", what, v))
			}
		}
	}
	add("label filter", c.LabelFilter)
	add("focus", c.FocusStrings...)
	add("focus file", c.FocusFiles...)
	add("skip", c.SkipStrings...)
	add("skip file", c.SkipFiles...)
	return strings.Join(parts, ", ")
}

// redact replaces every credential the run handed to the plugin wherever it
// could surface in a report: the plugin's stderr, spec messages, commands.
func (r *Session) redact(rep *report.Report) {
	var secrets []string
	if r.inst != nil {
		_, creds := r.inst.PluginConfig()
		for _, v := range creds {
			secrets = append(secrets, v)
		}
	}
	secrets = append(secrets, r.authSecrets()...)
	rep.Plugin.StderrTail = redactSecrets(rep.Plugin.StderrTail, secrets)
	rep.Command = redactSecrets(rep.Command, secrets)
	for i := range rep.Specs {
		rep.Specs[i].Reason = redactSecrets(rep.Specs[i].Reason, secrets)
		rep.Specs[i].Reproduce = redactSecrets(rep.Specs[i].Reproduce, secrets)
	}
}

// Redacted is what a secret is replaced with in reports.
const Redacted = "[REDACTED]"

// redactSecrets replaces each secret (of at least 3 bytes) in s.
func redactSecrets(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 3 {
			s = strings.ReplaceAll(s, sec, Redacted)
		}
	}
	return s
}

// WriteReports builds the report, writes report.json, junit.xml and
// summary.md into the config's ReportDir (when set), and prints the verdicts.
// A process of a --procs run (Shard set) also writes judge.json, and leaves
// the verdicts to its parent.
func (r *Session) WriteReports(gr types.Report) error {
	rep := r.BuildReport(gr)
	r.Report = rep
	if r.cfg.Shard == nil {
		printVerdicts(r.cfg.Logf, rep)
	}
	if r.cfg.ReportDir == "" {
		return nil
	}
	err := writeReportFiles(r.cfg.ReportDir, rep, r.cfg.Logf)
	if r.cfg.Shard != nil {
		err = errors.Join(err, writeJudgeFile(r.cfg.ReportDir, r.judged))
	}
	return err
}

// unwritten records on rep that its report files could not be written: a
// run that would have passed exits with ExitError, since whoever asked for
// the files (a CI step reading junit.xml) cannot see its verdict. A failed
// run keeps its exit code. It returns err.
func unwritten(rep *report.Report, err error) error {
	err = fmt.Errorf("write the report files: %w", err)
	if rep != nil && rep.ExitCode == report.ExitOK {
		rep.ExitCode, rep.ExitReason = report.ExitError, err.Error()
	}
	return err
}

// writeReportFiles writes rep's report.json, summary.md, junit.xml and
// report.html into dir.
func writeReportFiles(dir string, rep *report.Report, logf func(string, ...any)) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create report dir: %w", err)
	}
	var errs []error
	if _, err := rep.WriteJSON(dir); err != nil {
		errs = append(errs, err)
	}
	if _, err := rep.WriteSummary(dir); err != nil {
		errs = append(errs, err)
	}
	if _, err := rep.WriteJUnit(dir); err != nil {
		errs = append(errs, err)
	}
	if _, err := report.WriteHTML(dir, rep); err != nil {
		errs = append(errs, err)
	}
	logf("reports: %s/{report.json,junit.xml,summary.md,report.html}", dir)
	return errors.Join(errs...)
}

func printVerdicts(log func(string, ...any), rep *report.Report) {
	indent := func(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n      ") }
	log("")
	log("Verdicts for %s %s (backend %s via %s):", rep.Plugin.Name, rep.Plugin.Version, rep.Backend.Kind, rep.Backend.Provider)
	for _, c := range rep.Capabilities {
		extra := ""
		if c.Reason != "" {
			extra = " — " + indent(c.Reason)
		}
		log("  %-24s %-13s %3d passed %3d failed %3d skipped %3d errors%s", c.Name, c.Verdict, c.Passed, c.Failed, c.Skipped, c.Errors, extra)
	}
	defer func() {
		if rep.ExitCode != report.ExitOK {
			log("\nexit %d: %s", rep.ExitCode, rep.ExitReason)
		}
		if len(rep.CommandLeftOut) > 0 && rep.ExitCode != report.ExitOK {
			log("reproduce commands leave out %s (secrets): set them before running one", strings.Join(rep.CommandLeftOut, ", "))
		}
		log("accept: %d passed, %d failed, %d skipped", rep.Totals.Passed, rep.Totals.Failed+rep.Totals.Errors, rep.Totals.Skipped)
	}()
	// A failure shared by many specs (a plugin that did not start) is
	// printed in full once, then counted.
	same := map[string]int{}
	for _, s := range rep.Specs {
		if s.Outcome != report.Failed && s.Outcome != report.Error {
			continue
		}
		if same[s.Reason]++; same[s.Reason] > 3 {
			continue
		}
		log("\n%s: %s\n  at %s\n  %s\n  reproduce: %s", strings.ToUpper(string(s.Outcome)), s.Name, s.Location,
			strings.ReplaceAll(strings.TrimSpace(s.Reason), "\n", "\n  "), s.Reproduce)
	}
	for _, reason := range slices.Sorted(maps.Keys(same)) {
		if n := same[reason]; n > 3 {
			first, _, _ := strings.Cut(strings.TrimSpace(reason), "\n")
			log("\n… and %d more specs with the same message (%s); all are in report.json", n-3, first)
		}
	}
}

// What a report keeps of text the plugin or proxy wrote, so a run's reports
// stay a few MB whatever a plugin prints: the end of a stderr, and the
// beginning of each spec's message (the assertion comes first; a plugin's
// error text may follow).
const (
	stderrInReports  = 8 << 10
	messageInReports = 16 << 10
)

func gitCommit() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return ""
}
