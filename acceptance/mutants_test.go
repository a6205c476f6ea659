package acceptance_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/backends/mutant"
	"github.com/prism-suite/prism/proto/capability"
	"github.com/prism-suite/prism/reference/registry/registrymutant"
)

// accept runs prism-accept and returns its report and exit code.
func accept(t *testing.T, bin string, args ...string) (*report.Report, int, string) {
	t.Helper()
	return acceptEnv(t, bin, nil, args...)
}

// acceptEnv is accept with env added to prism-accept's environment (which
// the processes it starts inherit). Parallel tests use it where t.Setenv
// is not allowed.
func acceptEnv(t *testing.T, bin string, env []string, args ...string) (*report.Report, int, string) {
	t.Helper()
	reportDir := t.TempDir()
	args = append(args, "--report-dir", reportDir)
	cmd := exec.Command(filepath.Join(bin, "prism-accept"), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run prism-accept: %v", err)
	}
	rep, err := report.Read(filepath.Join(reportDir, "report.json"))
	if err != nil {
		t.Fatalf("prism-accept %s wrote no readable report (exit %d): %v\n%s", strings.Join(args, " "), code, err, out)
	}
	for _, f := range []string{"junit.xml", "summary.md"} {
		if _, err := os.Stat(filepath.Join(reportDir, f)); err != nil {
			t.Errorf("report file missing: %v", err)
		}
	}
	return rep, code, string(out)
}

// mutantKills is, for every mutant of backends/mutant, the specs that must
// fail to kill it (found by running each mutant; a defect may fail more).
var mutantKills = map[string]kill{
	"lost-delete": {specs: []string{
		"KeyValue basic deletes a key and reports that it existed",
		"KeyValue basic reports existence before and after a delete"}},
	"delete-existed-wrong": {specs: []string{
		"KeyValue basic deletes a key and reports that it existed"}},
	"stale-read": {specs: []string{
		"KeyValue basic returns the latest value after an overwrite"}},
	"wrong-notfound-code": {specs: []string{
		"KeyValue basic returns NotFound for a key that was never set"}},
	"exists-always": {specs: []string{
		"KeyValue basic reports existence before and after a delete"}},
	"empty-value-dropped": {specs: []string{
		"KeyValue basic stores an empty value as present and empty"}},
	"large-value-truncated": {specs: []string{
		"KeyValue basic stores a 1 MiB value unchanged"}},
	"ttl-ignored": {specs: []string{
		"KeyValue ttl expires a key after its TTL and reads it as missing at once, before any sweep",
		"KeyValue ttl reports the remaining TTL of a key that expires"}},
	"ttl-factor": {specs: []string{
		"KeyValue ttl expires a key after its TTL and reads it as missing at once, before any sweep",
		"KeyValue ttl reports the remaining TTL of a key that expires"}},
	"persist-noop": {specs: []string{
		"KeyValue ttl removes a TTL with Persist so the key outlives it"}},
	"scan-drops-last-page": {specs: []string{
		"KeyValue scan returns each of 10 000 keys exactly once in small pages, and nothing outside the prefix"}},
	"scan-prefix-boundary": {specs: []string{
		"KeyValue scan returns each of 10 000 keys exactly once in small pages, and nothing outside the prefix",
		"KeyValue scan treats glob and regex characters in the prefix literally"}},
	"scan-duplicates": {specs: []string{
		"KeyValue scan returns each of 10 000 keys exactly once in small pages, and nothing outside the prefix",
		"KeyValue scan returns keys present for the whole scan exactly once while other keys come and go between pages"}},
	"count-off-by-one": {specs: []string{
		"KeyValue scan counts the keys with a prefix, excluding deleted ones and neighbours"}},
	"batch-partial-write": {specs: []string{
		"KeyValue batch writes a batch of 1000 entries and reads them back in request order"}},
	"batch-get-unordered": {specs: []string{
		"KeyValue batch writes a batch of 1000 entries and reads them back in request order",
		"KeyValue batch reports missing keys as not found, in request order"}},
	"drop-1pct": {specs: []string{
		"PubSub basic delivers 1000 messages to each of 100 concurrent subscribers"}},
	// pubsub.ordered has one spec, and reorder fails it: pubsub.basic
	// shows the base delivers.
	"reorder": {witness: capability.PubSubBasic, specs: []string{
		"PubSub ordered delivers the messages of each of 10 concurrent publishers in publish order to every subscriber"}},
	"one-of-n": {specs: []string{
		"PubSub basic delivers every message to each of 5 subscribers exactly once",
		"PubSub basic delivers 1000 messages to each of 100 concurrent subscribers"}},
	"ignore-unsubscribe": {specs: []string{
		"PubSub basic stops delivery when a subscriber unsubscribes, with Unsubscribed as the last event"}},
	"lose-metadata": {specs: []string{
		"PubSub basic delivers the topic, metadata, the id Publish returned and the publish time"}},
	"topic-leak": {specs: []string{
		"PubSub basic delivers nothing from other topics, also when topics share a prefix or contain wildcard characters, which are literal"}},
	// queue-broadcast fails every pubsub.queue spec (it ignores the group,
	// so it also takes an invalid group name): pubsub.basic shows the base
	// delivers.
	"queue-broadcast": {witness: capability.PubSubBasic, specs: []string{
		"PubSub queue delivers each message to exactly one member of a group, while plain subscribers and other groups get every message"}},
	"unbounded-buffer": {specs: []string{
		"PubSub slow consumer handles a subscriber that stops reading by its declared policy, without stalling other subscribers or the publisher, and with bounded plugin memory"}},
	"redeliver-acked": {specs: []string{
		"PubSub durable never redelivers acknowledged messages, also after reconnecting, and resumes with what was published meanwhile"}},
	"durable-no-redelivery": {specs: []string{
		"PubSub durable redelivers a message that was not acknowledged after the ack deadline, counting the attempts"}},
	"expired-delete-existed": {specs: []string{
		"KeyValue ttl reports existed=false from Delete of a key whose TTL has ended",
	}},
	"expired-exists": {specs: []string{
		"KeyValue ttl answers Exists false for a key whose TTL has ended",
	}},
	"expired-getttl": {specs: []string{
		"KeyValue ttl returns NotFound from GetTTL of a key whose TTL has ended",
	}},
	"expired-expire-ok": {specs: []string{
		"KeyValue ttl returns NotFound from Expire of a key whose TTL has ended, and does not bring it back",
	}},
	"expired-persist-ok": {specs: []string{
		"KeyValue ttl returns NotFound from Persist of a key whose TTL has ended, and does not bring it back",
	}},
	"expired-in-scan": {specs: []string{
		"KeyValue ttl through scan leaves a key whose TTL has ended out of Scan, with and without values, in any page size",
	}},
	"expired-in-count": {specs: []string{
		"KeyValue ttl through scan leaves a key whose TTL has ended out of Count",
	}},
	"expired-batch-delete-existed": {specs: []string{
		"KeyValue ttl through batch reports existed=false from BatchDelete for a key whose TTL has ended",
	}},
	"batchset-keeps-ttl": {specs: []string{
		"KeyValue ttl through batch clears the TTL when BatchSet overwrites a key without one",
	}},
	"ttl-early-expiry": {specs: []string{
		"KeyValue ttl keeps a key readable, with its TTL counting down, at three quarters of a TTL of 3 s or more",
	}},
	"getttl-short": {specs: []string{
		"KeyValue ttl keeps a key readable, with its TTL counting down, at three quarters of a TTL of 3 s or more",
	}},
	"huge-ttl-set-no-expiry": {specs: []string{
		"KeyValue ttl keeps or refuses a huge TTL on Set, never dropping the expiry or the key",
	}},
	"huge-ttl-batchset-no-expiry": {specs: []string{
		"KeyValue ttl through batch keeps or refuses a huge TTL on BatchSet, never dropping the expiry or the keys",
	}},
	"huge-ttl-expire-deletes": {specs: []string{
		"KeyValue ttl keeps or refuses a huge TTL on Expire, never deleting the key",
	}},
	"replay-last-3": {specs: []string{
		"PubSub basic delivers to a new subscriber nothing published before it subscribed, also while other subscribers are live and right after a publish",
	}},
	"queue-sticky": {specs: []string{
		"PubSub queue judges every member across joins and leaves: each message goes to exactly one member live when it was published, a later member gets a share and nothing from before, a member that left gets nothing more",
	}},
	"queue-leaver-keeps-share": {specs: []string{
		"PubSub queue judges every member across joins and leaves: each message goes to exactly one member live when it was published, a later member gets a share and nothing from before, a member that left gets nothing more",
		"PubSub queue delivers to the remaining members after one leaves",
	}},
	"queue-replay-to-joiner": {specs: []string{
		"PubSub queue judges every member across joins and leaves: each message goes to exactly one member live when it was published, a later member gets a share and nothing from before, a member that left gets nothing more",
	}},
	"durable-from-start": {specs: []string{
		"PubSub durable starts a new durable consumer with the messages published after its first subscription, whatever other consumers of the topic hold",
	}},
	"durable-last-before": {specs: []string{
		"PubSub durable starts a new durable consumer with the messages published after its first subscription, whatever other consumers of the topic hold",
	}},
	// lifecycle mutants (backends/mutant/lifecycle.go): they break the
	// capability every plugin is held to, so their runs cannot show it
	// certified; a passed lifecycle spec shows the base works.
	"start-at-initialize": {specs: []string{
		"Lifecycle state machine in state initialized KeyValue Get answers FailedPrecondition naming the state",
		"Lifecycle state machine in state initialized gRPC health answers SERVING for the process and NOT_SERVING for each data service",
	}},
	"reinitialize-after-start": {specs: []string{
		"Lifecycle state machine in state started Initialize answers FailedPrecondition naming the state",
	}},
	"drain-no-wait": {specs: []string{
		"Lifecycle Drain with a call in flight waits for a subscription whose client stopped reading until Drain's deadline, refusing new calls meanwhile, and reports it in flight",
		"Lifecycle Drain with a call in flight returns as soon as the subscription it waits for ends, long before its deadline, and Stop then exits",
	}},
	"drain-ignores-deadline": {specs: []string{
		"Lifecycle Drain with a call in flight waits for a subscription whose client stopped reading until Drain's deadline, refusing new calls meanwhile, and reports it in flight",
	}},
	"healthy-while-draining": {specs: []string{
		"Lifecycle state machine in state draining HealthCheck reports DEGRADED, not HEALTHY",
	}},
	"serving-while-draining": {specs: []string{
		"Lifecycle state machine in state draining gRPC health answers SERVING for the process and NOT_SERVING for each data service",
	}},
	"start-always-ok": {specs: []string{
		"Lifecycle state machine in state new Start answers FailedPrecondition naming the state",
		"Lifecycle state machine in state draining Start answers FailedPrecondition naming the state",
		"Lifecycle state machine in state stopped Start answers FailedPrecondition naming the state",
	}},
	"stop-noop": {specs: []string{
		"Lifecycle state machine in state started Stop succeeds within the stop deadline and stops the plugin",
		"Lifecycle state machine in state stopped KeyValue Get answers Unavailable",
	}},
	"healthy-before-initialize": {specs: []string{
		"Lifecycle state machine in state new HealthCheck reports UNHEALTHY",
	}},
	"rotate-any-state": {specs: []string{
		"Lifecycle state machine in state new RotateCredentials answers FailedPrecondition naming the state, or Unimplemented when auth.rotation is not declared",
		"Lifecycle state machine in state stopped RotateCredentials answers FailedPrecondition naming the state, or Unimplemented when auth.rotation is not declared",
	}},
	"insert-lost-in-resize": {specs: []string{
		"KeyValue contention keeps every new key that 64 clients insert at once (500 each; 125 each through the proxy), each reading back exactly its value",
		"KeyValue contention through scan counts and scans exactly the 8 000 new keys that 64 clients inserted at once",
	}},
	"insert-refused-in-resize": {specs: []string{
		"KeyValue contention keeps every new key that 64 clients insert at once (500 each; 125 each through the proxy), each reading back exactly its value",
		"KeyValue contention through scan counts and scans exactly the 8 000 new keys that 64 clients inserted at once",
	}},
	"torn-write": {specs: []string{
		"KeyValue contention gives readers only whole, current values some writer wrote while 16 writers and 16 readers share 8 keys, and ends with each key holding a writer's last write",
		"KeyValue contention keeps a key whose last Set came after every Delete it raced with, and never shows a value nobody wrote",
	}},
	"stale-cache": {specs: []string{
		"KeyValue contention gives readers only whole, current values some writer wrote while 16 writers and 16 readers share 8 keys, and ends with each key holding a writer's last write",
	}},
	"blind-to-tokens": {specs: []string{
		"Lifecycle reports the standard health details and counts data calls that carried authorization metadata"}},
	"inflight-always-zero": {specs: []string{
		"Lifecycle reports an open subscription in the standard health details until it is cancelled"}},
	"retry-past-deadline": {specs: []string{
		"KeyValue faults lets go of the calls that timed out while the backend still hangs, without piling up calls in flight"}},
	"redis-expire-seconds": {specs: []string{
		"KeyValue ttl expires a key after its TTL and reads it as missing at once, before any sweep",
		"KeyValue ttl sets a TTL on an existing key with Expire",
	}},
}

// TestMutantsAreKilled runs the suites against every mutant, each wrapped
// around its base plugin (memstore, or nats on an embedded server), with
// the lifecycle specs and those of the capability the mutant breaks, and
// requires a proven kill (checkKill): exit code 1 with that capability
// failed, lifecycle certified, a spec of the capability (or of its witness)
// passed, and the specs of mutantKills failed. A surviving mutant means a
// spec is missing or too weak.
func TestMutantsAreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suites once per mutant")
	}
	bin := buildCommands(t)
	var matrix killMatrix
	t.Cleanup(func() { t.Logf("kill matrix:\n%s", &matrix) })
	for _, m := range mutant.All() {
		t.Run(m.Name, func(t *testing.T) {
			t.Parallel()
			k, ok := mutantKills[m.Name]
			if !ok {
				t.Fatalf("mutant %q has no entry in mutantKills", m.Name)
			}
			args := []string{"--plugin", filepath.Join(bin, "prism-mutant"), "--plugin-arg=--mutant=" + m.Name,
				"--plugin-arg=--base=" + m.BaseOrDefault(), "--backend", m.BaseOrDefault(), "--label-filter", k.labelFilter(m.Breaks, true)}
			switch m.BaseOrDefault() {
			case "memstore":
			case "redis":
				// A backend the harness can pause (Debian's redis-server);
				// miniredis cannot hang.
				args = append(args, "--instance", "process")
			default:
				// A hermetic backend: no container image or server binary needed.
				args = append(args, "--instance", "embedded")
			}
			if m.Breaks.Family() == "pubsub" {
				// A lost message makes a spec wait for it until Eventually's
				// deadline; a shorter one kills the mutant sooner.
				args = append(args, "--timeout-eventually", "5s")
			}
			rep, code, out := accept(t, bin, args...)
			// A lifecycle mutant fails lifecycle itself, so lifecycle cannot
			// also be required certified; its passed specs are the witness.
			verdict := checkKill(t, m.Name, m.Breaks, k, m.Breaks != capability.Lifecycle, rep, code, out)
			matrix.add(fmt.Sprintf("%-28s %-16s %-9s %-7s %s", m.Name, m.Breaks, m.BaseOrDefault(), verdict, strings.Join(k.specs, " | ")))
		})
	}
}

// TestMemstoreIsCertified is the control: the unbroken plugin passes the same run.
func TestMemstoreIsCertified(t *testing.T) {
	bin := buildCommands(t)
	rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--backend", "memstore")
	if code != report.ExitOK {
		t.Fatalf("exit %d, want 0\n%s", code, out)
	}
	for _, c := range rep.Capabilities {
		want := report.Certified
		if c.Name == "pubsub.durable" || strings.HasPrefix(c.Name, "registry.") || strings.HasPrefix(c.Name, "auth.") || strings.HasPrefix(c.Name, "admin.") { // memstore keeps nothing across a restart, and says so; the registry is the proxy's; auth.* need --auth and a backend; admin.* --admin
			want = report.NotDeclared
		}
		if c.Name == "keyvalue.linearizable" { // declared; judged by --robustness (robustness_test.go)
			want = report.NotTested
		}
		if c.Verdict != want {
			t.Errorf("%s: verdict %q, want %q", c.Name, c.Verdict, want)
		}
	}
	if rep.Plugin.SHA256 == "" || rep.Plugin.Name != "memstore" || rep.Schema != report.SchemaVersion || len(rep.Specs) == 0 {
		t.Errorf("report lacks required fields: %+v", rep.Plugin)
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")+os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		for _, s := range rep.Specs {
			if s.TraceID != "" {
				t.Errorf("spec %q has trace_id %q with tracing off", s.Name, s.TraceID)
				break
			}
		}
	}
}

// TestProbeFindsUndeclaredCapability checks the three-way cross-check: a
// plugin that implements keyvalue.ttl without declaring it is reported as
// "works but undeclared" with --probe-undeclared (and the run passes), as
// "not declared" without it, and fails the run when --require names it.
func TestProbeFindsUndeclaredCapability(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suites three times")
	}
	bin := buildCommands(t)
	// lifecycle too: a run that selects only undeclared capabilities
	// certifies nothing and exits 64 (report.Judge).
	args := []string{"--plugin", filepath.Join(bin, "prism-mutant"), "--plugin-arg=--mutant=undeclared-ttl", "--backend", "memstore",
		"--label-filter", "keyvalue.ttl || lifecycle"}

	rep, code, out := accept(t, bin, append(args, "--probe-undeclared")...)
	if v := rep.Verdict("keyvalue.ttl"); v != report.WorksUndeclared || code != report.ExitOK {
		t.Errorf("with --probe-undeclared: keyvalue.ttl %q, exit %d; want %q, exit 0\n%s", v, code, report.WorksUndeclared, out)
	}
	rep, code, out = accept(t, bin, args...)
	if v := rep.Verdict("keyvalue.ttl"); v != report.NotDeclared || code != report.ExitOK {
		t.Errorf("without probes: keyvalue.ttl %q, exit %d; want %q, exit 0\n%s", v, code, report.NotDeclared, out)
	}
	rep, code, out = accept(t, bin, append(args, "--require", "keyvalue.ttl")...)
	if v := rep.Verdict("keyvalue.ttl"); v != report.VerdictFail || code != report.ExitFailed {
		t.Errorf("with --require keyvalue.ttl: %q, exit %d; want failed, exit 1\n%s", v, code, out)
	}
}

// registryKills is, for every registry mutant, the specs that must fail to
// kill it (found by running each mutant; a defect may fail more).
var registryKills = map[string]kill{
	registrymutant.FilterIgnoresClause: {specs: []string{
		"via proxy Registry filters selects exactly sensor-1 for {type: sensor, floor: 1} among the RFC-018 identities"}},
	registrymutant.NeMissingWrong: {specs: []string{
		"via proxy Registry filters evaluates every operator as SEMANTICS.md defines it: 1 equals 1.0, types never mix, ne is not eq, bytes order strings"}},
	registrymutant.ExpiredEnumerated: {specs: []string{
		"via proxy Registry basic never enumerates an identity once its TTL has passed, and registers it again at once"}},
	registrymutant.ReplaceIgnored: {specs: []string{
		"via proxy Registry basic answers AlreadyExists for a live identity without replace and keeps the first registration"}},
	registrymutant.QuotaCountsExpired: {specs: []string{
		"via proxy Registry basic answers ResourceExhausted at the quota and never counts expired identities"}},
	registrymutant.MulticastTwice: {specs: []string{
		"via proxy Registry multicast delivers the RFC-018 multicast to {type: sensor, floor: 1}: 1 target, 1 delivered, received by sensor-1 only",
		"via proxy Registry multicast delivers to each of 1 000 identities exactly once"}},
	registrymutant.DeliveredNoReceiver: {specs: []string{
		"via proxy Registry multicast reports FAILED for a target without a live receiver and never counts it delivered"}},
	registrymutant.ContainsListSubstring: {specs: []string{nearMissSpec}},
	registrymutant.LteGteStrict:          {specs: []string{nearMissSpec}},
	registrymutant.EqCoercesTypes:        {specs: []string{nearMissSpec}},
	registrymutant.EqCaseInsensitive:     {specs: []string{nearMissSpec}},
	registrymutant.StartsWithAnywhere:    {specs: []string{nearMissSpec}},
	registrymutant.ExistsEmptyAbsent:     {specs: []string{nearMissSpec}},
	registrymutant.IntComparedAsFloat:    {specs: []string{nearMissSpec}},
	registrymutant.ExpiredRegisterRefused: {specs: []string{expiredGoneSpec,
		"via proxy Registry basic never enumerates an identity once its TTL has passed, and registers it again at once"}},
	registrymutant.ExpiredHeartbeatRevives:  {specs: []string{expiredGoneSpec}},
	registrymutant.ExpiredUnregisterExisted: {specs: []string{expiredGoneSpec}},
	registrymutant.HeartbeatExpiresEarly: {specs: []string{
		"via proxy Registry expiry keeps an identity live until its TTL ends: at 75 % of a TTL of at least 2 s, also of a heartbeat's, every operation sees it"}},
	registrymutant.ExpiredReceiveOpens: {specs: []string{
		"via proxy Registry expiry answers NotFound when opening the inbox of an expired identity the slot still holds, and opens it once registered again"}},
	registrymutant.FanoutIgnoresDeadline: {specs: []string{
		"via proxy Registry multicast answers by the caller's deadline, with the stuck target TIMEOUT, when a target's delivery is stuck"}},
}

// expiredGoneSpec is the registry spec that kills the mutants whose
// operations ignore expiry.
const expiredGoneSpec = "via proxy Registry expiry treats an expired identity the slot still holds as gone in Enumerate, total_count, Register, a heartbeat and Unregister"

// nearMissSpec is the registry spec that kills the filter near-miss mutants.
const nearMissSpec = "via proxy Registry filters selects values that just match every operator and never those that almost match, in the page and in total_count"

// registryAccept runs the registry suite through the prism-proxy in bin on
// memstore slots, with the specs labelFilter selects.
func registryAccept(t *testing.T, bin string, env []string, labelFilter string) (*report.Report, int, string) {
	t.Helper()
	return acceptEnv(t, bin, env, "--pattern", "registry", "--registry-slot", "memstore", "--messaging-slot", "memstore",
		"--proxy", filepath.Join(bin, "prism-proxy"), "--label-filter", labelFilter)
}

// TestRegistryMutantsAreKilled runs the registry suite through prism-proxy
// (memstore slots) once per registry mutant, which the proxy builds into its
// coordinators when PRISM_REGISTRY_MUTANT names it (a prism_mutants build
// only), with the specs of the capability the mutant breaks, and requires a
// proven kill (checkKill): exit code 1 with that capability failed, one of
// its specs passed and the specs of registryKills failed. A pattern run has
// no lifecycle specs (the proxy serving at all is its BeforeAll).
func TestRegistryMutantsAreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the registry suite once per mutant")
	}
	bin := buildMutantCommands(t)
	var matrix killMatrix
	t.Cleanup(func() { t.Logf("registry kill matrix:\n%s", &matrix) })
	for _, m := range registrymutant.All() {
		t.Run(m.Name, func(t *testing.T) {
			t.Parallel()
			k, ok := registryKills[m.Name]
			if !ok {
				t.Fatalf("registry mutant %q has no entry in registryKills", m.Name)
			}
			// prism-accept's proxy inherits the variable
			rep, code, out := registryAccept(t, bin, []string{registrymutant.Env + "=" + m.Name}, k.labelFilter(m.Breaks, false))
			verdict := checkKill(t, m.Name, m.Breaks, k, false, rep, code, out)
			matrix.add(fmt.Sprintf("%-28s %-20s %-7s %s", m.Name, m.Breaks, verdict, strings.Join(k.specs, " | ")))
		})
	}
}

// TestRegistryIsCertifiedForTheProxy is the control of the registry
// mutants: the shipped prism-proxy (no build tag) passes the registry suite
// on memstore slots.
func TestRegistryIsCertifiedForTheProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the registry suite")
	}
	bin := buildCommands(t)
	caps := []capability.Name{capability.RegistryBasic, capability.RegistryMulticast}
	rep, code, out := registryAccept(t, bin, nil, string(caps[0])+" || "+string(caps[1]))
	for _, c := range caps {
		if v := rep.Verdict(string(c)); v != report.Certified {
			t.Errorf("%s: %q, want %q\n%s", c, v, report.Certified, out)
		}
	}
	if code != report.ExitOK {
		t.Errorf("exit %d, want %d\n%s", code, report.ExitOK, out)
	}
}

// TestKillTablesNameEveryMutant checks that the kill tables and the mutants
// agree: every mutant has the specs that must catch it, and no entry names
// a mutant that does not exist.
func TestKillTablesNameEveryMutant(t *testing.T) {
	check := func(table string, kills map[string]kill, names []string) {
		known := map[string]bool{}
		for _, n := range names {
			known[n] = true
			if k, ok := kills[n]; !ok || len(k.specs) == 0 {
				t.Errorf("%s: mutant %q has no spec that must fail", table, n)
			}
		}
		for n := range kills {
			if !known[n] {
				t.Errorf("%s: %q is not a mutant", table, n)
			}
		}
	}
	var names []string
	for _, m := range mutant.All() {
		names = append(names, m.Name)
	}
	check("mutantKills", mutantKills, names)
	check("registryKills", registryKills, registrymutant.Names())
	for _, m := range authMutants {
		if len(m.kill.specs) == 0 {
			t.Errorf("authMutants: %q has no spec that must fail", m.defect)
		}
	}
}
