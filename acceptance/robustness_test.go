package acceptance_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/backends/mutant"
	"github.com/prism-suite/prism/harness/history"
)

// robust runs prism-accept --robustness with args and returns its report,
// exit code, output and report folder.
func robust(t *testing.T, bin string, args ...string) (*report.Report, int, string, string) {
	t.Helper()
	dir := t.TempDir()
	args = append([]string{"--robustness", "--report-dir", dir}, args...)
	cmd := exec.Command(filepath.Join(bin, "prism-accept"), args...)
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run prism-accept: %v", err)
	}
	rep, err := report.Read(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatalf("prism-accept %s wrote no readable report (exit %d): %v\n%s", strings.Join(args, " "), code, err, out)
	}
	if rep.Robustness == nil {
		t.Fatalf("report.json has no robustness section\n%s", out)
	}
	return rep, code, string(out), dir
}

// TestRobustnessCatchesAckBeforeStore: a plugin that declares
// keyvalue.linearizable and acknowledges Set before storing it fails the
// run (exit 1), and each key whose history is not linearizable has its
// porcupine visualization next to report.json, naming the key.
func TestRobustnessCatchesAckBeforeStore(t *testing.T) {
	t.Parallel() // mostly waiting: rate-limited clients, held faults
	bin := buildCommands(t)
	rep, code, out, dir := robust(t, bin, "--plugin", filepath.Join(bin, "prism-mutant"),
		"--plugin-arg=--mutant="+mutant.AckBeforeStore, "--backend", "memstore", "--duration", "3s")
	if code != report.ExitFailed {
		t.Fatalf("exit %d, want %d\n%s", code, report.ExitFailed, out)
	}
	if v := rep.Verdict("keyvalue.linearizable"); v != report.VerdictFail {
		t.Fatalf("keyvalue.linearizable %q, want failed\n%s", v, out)
	}
	kv := rep.Robustness.KeyValue
	if kv == nil || len(kv.Illegal()) == 0 {
		t.Fatalf("no key reported not linearizable\n%s", out)
	}
	for _, k := range kv.Keys {
		if k.Verdict != history.NotLinearizable {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, k.Visualization))
		if k.Visualization == "" || err != nil {
			t.Fatalf("key %s: no visualization (%q): %v", k.Key, k.Visualization, err)
		}
		if !strings.Contains(k.Visualization, k.Key) || !strings.Contains(string(b), "set(") {
			t.Fatalf("visualization %s does not name key %s or show its operations", k.Visualization, k.Key)
		}
	}
}

// TestRobustnessMemstoreIsClean is the control: the unbroken plugin, which
// declares keyvalue.linearizable, is certified with no anomaly, directly
// and through the proxy; the report says which plugin ran and how, as a
// suite run's does.
func TestRobustnessMemstoreIsClean(t *testing.T) {
	t.Parallel() // mostly waiting: rate-limited clients, held faults
	bin := buildCommands(t)
	proxy := filepath.Join(bin, "prism-proxy")
	for _, via := range []string{"direct", "proxy"} {
		t.Run(via, func(t *testing.T) {
			rep, code, out, _ := robust(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--backend", "memstore",
				"--duration", "2s", "--via", via, "--proxy", proxy)
			if code != report.ExitOK || rep.Verdict("keyvalue.linearizable") != report.Certified {
				t.Fatalf("exit %d, keyvalue.linearizable %q; want 0, certified\n%s", code, rep.Verdict("keyvalue.linearizable"), out)
			}
			p := rep.Plugin
			if p.Mode != report.ModeProcess || p.Binary != filepath.Join(bin, "prism-memstore") || p.SHA256 == "" || p.Name != "memstore" || p.Info["backend"] == "" {
				t.Errorf("plugin %+v; want the memstore process with its digest and its description", p)
			}
			if (rep.Proxy != nil) != (via != "direct") || rep.Timeouts["handshake"] == "" {
				t.Errorf("proxy %+v, timeouts %v; want the proxy exactly when the run went through it, and every timeout", rep.Proxy, rep.Timeouts)
			}
			kv := rep.Robustness.KeyValue
			if stale, lost, phantom := kv.Totals(); kv.Ops == 0 || stale+lost+phantom > 0 || len(rep.Robustness.Facts) > 0 {
				t.Fatalf("%d ops, anomalies %d/%d/%d, facts %v; want ops and none\n%s", kv.Ops, stale, lost, phantom, rep.Robustness.Facts, out)
			}
		})
	}
}

// TestRobustnessRedisKill: the redis plugin on one redis-server killed and
// restarted: it does not declare keyvalue.linearizable, so whatever it
// does is reported as facts, never a failure; every kill is healed and
// has its recovery times.
func TestRobustnessRedisKill(t *testing.T) {
	t.Parallel() // mostly waiting: rate-limited clients, held faults
	if testing.Short() {
		t.Skip("an 8s run with faults")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH (apt-get install redis-server)")
	}
	bin := buildCommands(t)
	redisBin, err := buildDir("robustness", nil, "../backends/redis/cmd/prism-redis")
	if err != nil {
		t.Fatal(err)
	}
	rep, code, out, _ := robust(t, bin, "--plugin", filepath.Join(redisBin, "prism-redis"), "--backend", "redis",
		"--instance", "process", "--nemesis", "kill", "--duration", "8s")
	if code != report.ExitOK {
		t.Fatalf("exit %d, want 0 (facts, not a failure)\n%s", code, out)
	}
	if v := rep.Verdict("keyvalue.linearizable"); v != report.NotDeclared {
		t.Fatalf("keyvalue.linearizable %q, want not declared\n%s", v, out)
	}
	evs := rep.Robustness.Events
	if len(evs) == 0 {
		t.Fatalf("no fault injected\n%s", out)
	}
	for i, e := range evs {
		if e.Healed.IsZero() || e.Recovered.IsZero() || e.Err != "" {
			t.Fatalf("event %+v: not healed and recovered\n%s", e, out)
		}
		// The last fault may be healed as the run ends, with no call after.
		if i < len(evs)-1 && e.ServiceRecoverMS < 0 {
			t.Fatalf("event %+v: the plugin never served again after it\n%s", e, out)
		}
	}
	if kv := rep.Robustness.KeyValue; kv.ByOutcome[history.Unknown] == 0 || kv.ByOutcome[history.OK] == 0 {
		t.Fatalf("outcomes %v: a kill must cost some calls and the rest succeed\n%s", kv.ByOutcome, out)
	}
}

// TestRobustnessDurablePubSub: the nats plugin on an embedded server keeps
// every acknowledged message and never delivers one after its ack (the
// consumer cycles its subscription); the redeliver-acked mutant, which gets
// a returning consumer everything again, fails pubsub.durable.
func TestRobustnessDurablePubSub(t *testing.T) {
	t.Parallel() // mostly waiting: rate-limited clients, held faults
	if testing.Short() {
		t.Skip("two 3s runs")
	}
	bin := buildCommands(t)
	natsBin, err := buildDir("robustness-nats", nil, "../backends/nats/cmd/prism-nats")
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"--backend", "nats", "--instance", "embedded", "--nemesis", "none", "--duration", "3s"}
	rep, code, out, _ := robust(t, bin, append([]string{"--plugin", filepath.Join(natsBin, "prism-nats")}, common...)...)
	ps := rep.Robustness.PubSub
	if code != report.ExitOK || rep.Verdict("pubsub.durable") != report.Certified || ps == nil || ps.Acked == 0 || ps.Lost+ps.AfterAck > 0 || ps.Resubscribes == 0 {
		t.Fatalf("exit %d, pubsub.durable %q, %+v; want 0, certified, messages acked, none lost or after ack, the consumer back at least once\n%s",
			code, rep.Verdict("pubsub.durable"), ps, out)
	}
	rep, code, out, _ = robust(t, bin, append([]string{"--plugin", filepath.Join(bin, "prism-mutant"),
		"--plugin-arg=--mutant=redeliver-acked", "--plugin-arg=--base=nats"}, common...)...)
	if code != report.ExitFailed || rep.Verdict("pubsub.durable") != report.VerdictFail || rep.Robustness.PubSub.AfterAck == 0 {
		t.Fatalf("redeliver-acked: exit %d, pubsub.durable %q, %+v; want 1, failed, deliveries after ack\n%s",
			code, rep.Verdict("pubsub.durable"), rep.Robustness.PubSub, out)
	}
}

// TestRobustnessUsage: flags a robustness run cannot honour are bad usage.
func TestRobustnessUsage(t *testing.T) {
	bin := buildCommands(t)
	for _, args := range [][]string{
		{"--via", "both"},
		{"--nemesis", "chaos"},
		{"--duration", "0s"},
		{"--clients", "0"},
		{"--auth"},
	} {
		cmd := exec.Command(filepath.Join(bin, "prism-accept"), append([]string{"--robustness", "--plugin", filepath.Join(bin, "prism-memstore")}, args...)...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != report.ExitUsage {
			t.Errorf("%v: %v, want exit %d\n%s", args, err, report.ExitUsage, out)
		}
	}
}

// TestRobustnessUnwritableReport: a clean run whose report folder cannot be
// made (a file stands there) exits 2 and says why: whoever asked for the
// report cannot read its verdict.
func TestRobustnessUnwritableReport(t *testing.T) {
	bin := buildCommands(t)
	blocker := filepath.Join(t.TempDir(), "report")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "prism-accept"), "--robustness", "--plugin", filepath.Join(bin, "prism-memstore"),
		"--duration", "1s", "--report-dir", filepath.Join(blocker, "sub"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != report.ExitError || !strings.Contains(string(out), "write the report files") {
		t.Fatalf("%v, want exit %d naming the report files\n%s", err, report.ExitError, out)
	}
}

// TestRobustnessInterrupted: SIGINT during the workload stops the run,
// writes the report and exits 130; an interrupted run is never a verdict.
func TestRobustnessInterrupted(t *testing.T) {
	bin := buildCommands(t)
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(bin, "prism-accept"), "--robustness", "--plugin", filepath.Join(bin, "prism-memstore"),
		"--duration", "60s", "--report-dir", dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var out strings.Builder
	for sc.Scan() { // the workload runs once this line is printed
		out.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "robustness: ") {
			break
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Fatalf("%v, want exit 130\n%s", err, out.String())
	}
	rep, err := report.Read(filepath.Join(dir, "report.json"))
	if err != nil || rep.ExitCode != 130 || !strings.Contains(rep.ExitReason, "interrupted by SIGINT") {
		t.Fatalf("report %v: %+v", err, rep)
	}
}

// TestRobustnessUnsupportedNemesis: a fault the instance cannot take is a
// harness error (exit 2) saying why, before any workload runs: never a pass.
func TestRobustnessUnsupportedNemesis(t *testing.T) {
	bin := buildCommands(t)
	rep, code, out, _ := robust(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--nemesis", "kill", "--duration", "2s")
	if code != report.ExitError || rep.Robustness.KeyValue != nil || len(rep.Robustness.Errors) != 1 ||
		!strings.Contains(rep.Robustness.Errors[0], "memstore has no backend node") {
		t.Fatalf("exit %d, errors %q, keyvalue %v; want 2, the reason, no workload\n%s", code, rep.Robustness.Errors, rep.Robustness.KeyValue, out)
	}
}
