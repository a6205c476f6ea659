package acceptance

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/prism-suite/prism/acceptance/report"
)

// A --procs run splits the selected specs over several prism-accept
// processes, each with its own backend instance and plugin (the suites'
// specs share nothing but the plugin under test), and merges what they
// report into one report judged once, by report.Judge, as if one process had
// run every spec.
//
// The parent previews the suite with the run's selection (Ginkgo's
// PreviewSpecs: nothing runs), groups the selected specs by the container
// their It is in — the Its of one container, an Ordered one's among them,
// stay in one process, in order — and gives each process a share of the
// groups, balanced by the durations of the report an earlier run left in the
// report folder (a second per spec when there is none). Each process runs with a shard
// file (--shard) naming its specs by file and line; it writes its reports
// into <report-dir>/procs/<n> and, for the merge, the exact input of Judge
// (judge.json).
//
// What can go wrong is the harness's, never a pass: a process that leaves no
// judge.json, a spec no process ran or two ran, reports that disagree on the
// spec list: each is an error (exit 2) naming the process and what it
// printed.

// Shard is what a --procs parent tells one of its processes.
type Shard struct {
	// Proc is this process's number, from 1, of Procs.
	Proc  int `json:"proc"`
	Procs int `json:"procs"`
	// Locations are the --ginkgo.focus-file filters (file$:line) of the
	// specs this process runs.
	Locations []string `json:"locations"`
	// Command, CommandLeftOut and ReportDir are the parent's: reproduce
	// commands name the run a user typed, not this process.
	Command        string   `json:"command"`
	CommandLeftOut []string `json:"command_left_out,omitempty"`
	ReportDir      string   `json:"report_dir"`
}

// shardFileName is the shard file in a process's report folder, and
// judgeFileName the report.Run it writes there.
const (
	shardFileName = "shard.json"
	judgeFileName = "judge.json"
	procsDir      = "procs"
)

// loadShard reads a shard file.
func loadShard(path string) (*Shard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--shard: %w", err)
	}
	var s Shard
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("--shard %s: %w", path, err)
	}
	if s.Proc < 1 || s.Proc > s.Procs || len(s.Locations) == 0 {
		return nil, fmt.Errorf("--shard %s: process %d of %d with %d specs is not a shard", path, s.Proc, s.Procs, len(s.Locations))
	}
	return &s, nil
}

// previewed is one It of the suite as a preview sees it.
type previewed struct {
	key      string // location, via and name: the same in every process's report
	group    string // the location of the container the It is in
	focus    string // the It's --ginkgo.focus-file filter (file$:line)
	selected bool
}

// specKey identifies a spec across the processes of a run.
func specKey(location, via, name string) string { return location + "\x00" + via + "\x00" + name }

// focusFile is the --ginkgo.focus-file form of an It's file: its folder and
// name, anchored at the end (as reproduce commands write it).
func focusFile(loc types.CodeLocation) string {
	return regexp.QuoteMeta(filepath.Base(filepath.Dir(loc.FileName))+"/"+filepath.Base(loc.FileName)) + "$"
}

// preview lists the suite's Its with the run's selection, running nothing.
// r must be the registered session: while it previews, its report nodes
// write nothing.
func (r *Session) preview(sc types.SuiteConfig) []previewed {
	r.previewing = true
	defer func() { r.previewing = false }()
	rep := PreviewSpecs(SuiteDescription, sc)
	var out []previewed
	for _, sr := range rep.SpecReports {
		if sr.LeafNodeType != types.NodeTypeIt {
			continue
		}
		group := sr.LeafNodeLocation.FileName
		if n := len(sr.ContainerHierarchyLocations); n > 0 {
			group = sr.ContainerHierarchyLocations[n-1].String()
		}
		out = append(out, previewed{
			key:   specKey(sr.LeafNodeLocation.String(), string(viaOf(sr)), specName(sr)),
			group: group, focus: focusFile(sr.LeafNodeLocation) + ":" + strconv.Itoa(sr.LeafNodeLocation.LineNumber),
			selected: sr.State == types.SpecStatePassed, // a dry run passes what it would run
		})
	}
	return out
}

// partition splits the selected specs into at most n shards of whole groups,
// longest first onto the least loaded (weights: the durations in prev, a
// report of an earlier run, else one per spec). Each shard lists its specs'
// file$:line filters; no shard is empty.
func partition(specs []previewed, n int, prev *report.Report) [][]string {
	weight := map[string]float64{}
	if prev != nil {
		for _, s := range prev.Specs {
			weight[specKey(s.Location, s.Via, s.Name)] = s.DurationMS
		}
	}
	// A spec ties its container to its It's filter (Its made in a loop
	// share one, and one It can sit in several containers: direct and via
	// proxy); the groups are what these ties connect.
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		p, ok := parent[x]
		if !ok || p == x {
			parent[x] = x
			return x
		}
		root := find(p)
		parent[x] = root
		return root
	}
	for _, s := range specs {
		if s.selected {
			parent[find("c "+s.group)] = find("f " + s.focus)
		}
	}
	type group struct {
		locs  []string
		total float64
	}
	byRoot := map[string]*group{}
	var order []*group
	for _, s := range specs {
		if !s.selected {
			continue
		}
		root := find("f " + s.focus)
		g := byRoot[root]
		if g == nil {
			g = &group{}
			byRoot[root] = g
			order = append(order, g)
		}
		if !slices.Contains(g.locs, s.focus) {
			g.locs = append(g.locs, s.focus)
		}
		w, ok := weight[s.key]
		if !ok {
			w = 1000 // no earlier figure: a second, the order of a typical spec
		}
		g.total += max(w, 1)
	}
	slices.SortStableFunc(order, func(a, b *group) int { return cmp.Compare(b.total, a.total) })
	n = min(n, len(order))
	shards := make([][]string, n)
	load := make([]float64, n)
	for _, g := range order {
		i := slices.Index(load, slices.Min(load))
		shards[i] = append(shards[i], g.locs...)
		load[i] += g.total
	}
	return shards
}

// dropFlags returns args without the named flags and their values (in any
// of Go's forms: -f v, --f v, -f=v, --f=v). Every flag named takes a value.
func dropFlags(args []string, names ...string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && slices.Contains(names, name) {
			if !hasValue {
				i++ // its value is the next argument
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

// runProcs runs the suite in n processes and merges their reports into
// cfg.ReportDir. args are prism-accept's arguments; sc is the run's suite
// config, r the registered session (for the preview).
func runProcs(r *Session, n int, args []string, sc types.SuiteConfig, stdout, stderr io.Writer) int {
	cfg := r.cfg
	start := time.Now()
	specs := r.preview(sc)
	var prev *report.Report
	if p, err := report.Read(filepath.Join(cfg.ReportDir, "report.json")); err == nil {
		prev = p
	}
	shards := partition(specs, n, prev)
	if len(shards) < 2 {
		return -1 // nothing to split: run in this process
	}
	cfg.Logf("prism-accept: running the selected specs in %d processes, each with its own backend and plugin; their reports are in %s",
		len(shards), filepath.Join(cfg.ReportDir, procsDir))
	if err := os.RemoveAll(filepath.Join(cfg.ReportDir, procsDir)); err != nil {
		fmt.Fprintf(stderr, "prism-accept: --procs: %v\n", err)
		return report.ExitError
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "prism-accept: --procs: %v\n", err)
		return report.ExitError
	}
	base := dropFlags(args, "procs", "report-dir", "ginkgo.focus-file", "shard")
	procs := make([]*procRun, len(shards))
	for i, locs := range shards {
		p := &procRun{n: i + 1, dir: filepath.Join(cfg.ReportDir, procsDir, strconv.Itoa(i+1))}
		procs[i] = p
		sh := Shard{Proc: i + 1, Procs: len(shards), Locations: locs, Command: cfg.Command, CommandLeftOut: cfg.CommandLeftOut, ReportDir: cfg.ReportDir}
		if err := p.start(exe, base, sh, stdout, stderr); err != nil {
			p.err = fmt.Errorf("start process %d: %w", p.n, err)
		}
	}
	stopSignals := forwardSignals(procs, stderr)
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.wait)
	}
	wg.Wait()
	sig := stopSignals()

	rep := mergeProcs(cfg, sc, specs, procs, sig)
	rep.StartTime, rep.DurationMS = start, time.Since(start).Milliseconds()
	r.Report = rep
	printVerdicts(cfg.Logf, rep)
	if err := writeReportFiles(cfg.ReportDir, rep, cfg.Logf); err != nil {
		fmt.Fprintln(stderr, "prism-accept:", unwritten(rep, err))
	}
	return rep.ExitCode
}

// procRun is one process of a --procs run.
type procRun struct {
	n     int
	dir   string
	cmd   *exec.Cmd
	out   sync.WaitGroup // the copies of its stdout and stderr
	err   error          // it could not start
	code  int            // its exit code, -1 when a signal ended it
	state string         // how it ended
}

func (p *procRun) start(exe string, base []string, sh Shard, stdout, stderr io.Writer) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(sh, "", "  ")
	if err != nil {
		return err
	}
	shardFile := filepath.Join(p.dir, shardFileName)
	if err := os.WriteFile(shardFile, b, 0o644); err != nil {
		return err
	}
	args := append(slices.Clone(base), "--report-dir="+p.dir, "--shard="+shardFile)
	p.cmd = exec.Command(exe, args...)
	p.cmd.SysProcAttr = childProcAttr()
	outR, err := p.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	errR, err := p.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	prefix := fmt.Sprintf("[%d/%d] ", sh.Proc, sh.Procs)
	p.out.Add(2)
	go p.copyLines(stdout, outR, prefix)
	go p.copyLines(stderr, errR, prefix)
	return nil
}

// lineMu keeps the processes' lines whole on the shared outputs.
var lineMu sync.Mutex

func (p *procRun) copyLines(w io.Writer, r io.Reader, prefix string) {
	defer p.out.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lineMu.Lock()
		fmt.Fprintf(w, "%s%s\n", prefix, sc.Text())
		lineMu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r) // a line longer than the buffer: keep the pipe drained
}

func (p *procRun) wait() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.out.Wait()
	_ = p.cmd.Wait() // how it ended is in ProcessState
	p.code, p.state = p.cmd.ProcessState.ExitCode(), p.cmd.ProcessState.String()
}

// forwardSignals passes SIGINT and SIGTERM on to the processes (they run in
// process groups of their own, so a terminal's Ctrl-C reaches them once,
// through here). The returned stop ends forwarding and returns the first
// signal, or nil.
func forwardSignals(procs []*procRun, stderr io.Writer) func() os.Signal {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	var mu sync.Mutex
	var first os.Signal
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-ch:
				mu.Lock()
				if first == nil {
					first = sig
					fmt.Fprintf(stderr, "\nprism-accept: %s: stopping every process of the run; each removes its containers and writes its report (again to exit at once)\n", sigName(sig))
				}
				mu.Unlock()
				for _, p := range procs {
					if p.cmd != nil && p.cmd.Process != nil {
						_ = p.cmd.Process.Signal(sig)
					}
				}
			case <-done:
				return
			}
		}
	}()
	return func() os.Signal {
		signal.Stop(ch)
		close(done)
		mu.Lock()
		defer mu.Unlock()
		return first
	}
}

// mergeProcs builds the run's report from its processes' reports.
func mergeProcs(cfg Config, sc types.SuiteConfig, specs []previewed, procs []*procRun, sig os.Signal) *report.Report {
	var (
		base  *report.Report
		runs  []*report.Run
		harms []string // harness errors of the merge
	)
	for _, p := range procs {
		if p.err != nil {
			harms = append(harms, p.err.Error())
			continue
		}
		run, rep, err := readProc(p.dir)
		if err != nil {
			harms = append(harms, fmt.Sprintf("process %d exited (%s) without its reports (%v); its output is above, prefixed [%d/%d]", p.n, p.state, err, p.n, len(procs)))
			continue
		}
		if base == nil {
			base = rep
		}
		runs = append(runs, run)
	}
	if base == nil {
		base = &report.Report{Schema: report.SchemaVersion, SuiteVersion: SuiteVersion, GitCommit: gitCommit(), Seed: cfg.Seed,
			Via: string(cfg.Via), Backend: backendInfoOf(cfg), Plugin: report.Plugin{Binary: cfg.Plugin}}
	}
	rep := *base
	rep.Procs = len(procs)
	rep.Command = runCommand(cfg.Command, sc, cfg.ReportDir)
	rep.CommandLeftOut = cfg.CommandLeftOut
	rep.LabelFilter = sc.LabelFilter

	merged := report.Run{Described: len(runs) > 0, Required: cfg.Require, Selection: selectionOf(sc)}
	for _, run := range runs {
		merged.Described = merged.Described && run.Described
		if merged.Declared == nil {
			merged.Declared = run.Declared
		} else if !maps.Equal(merged.Declared, run.Declared) {
			harms = append(harms, fmt.Sprintf("the plugin declared %v in one process and %v in another", merged.Declared, run.Declared))
		}
		if run.Setup != nil && (merged.Setup == nil || merged.Setup.Outcome == report.Error && run.Setup.Outcome == report.Failed) {
			merged.Setup = run.Setup
		}
	}
	rep.Specs, harms = mergeSpecs(specs, runs, harms)
	rep.Totals = report.Totals{}
	for _, s := range rep.Specs {
		rep.Totals.Add(s.Outcome)
	}
	merged.Specs = rep.Specs
	if len(harms) > 0 && merged.Setup == nil && len(runs) == 0 {
		merged.Setup = &report.SetupFailure{Outcome: report.Error, Message: "harness: " + strings.Join(harms, "; ")}
	}
	caps, code, why := report.Judge(merged)
	for i, c := range caps {
		if c.Reason != "" || !c.Declared {
			continue
		}
		if old := base.Capability(c.Name); old != nil && (old.Reason == proxyDeclaresReason || old.Reason == proxyDeclaresAdminReason) {
			caps[i].Reason = old.Reason
		}
	}
	rep.Capabilities, rep.ExitCode, rep.ExitReason = caps, code, why
	if len(harms) > 0 && rep.ExitCode != report.ExitFailed {
		rep.ExitCode = report.ExitError
		rep.ExitReason = "harness: " + strings.Join(harms, "; ")
	} else if len(harms) > 0 {
		rep.ExitReason += "; and harness: " + strings.Join(harms, "; ")
	}
	if sig != nil {
		markInterrupted(&rep, sig)
	}
	return &rep
}

// mergeSpecs takes each spec from the process that ran it. Every process
// reports every It (the ones outside its shard as disabled), in the same
// order as the preview; a selected spec no process ran, or two ran, is a
// harness error.
func mergeSpecs(specs []previewed, runs []*report.Run, harms []string) ([]report.Spec, []string) {
	if len(runs) == 0 {
		return nil, harms
	}
	for i, run := range runs {
		if len(run.Specs) != len(specs) {
			return nil, append(harms, fmt.Sprintf("a process reported %d specs, the preview %d", len(run.Specs), len(specs)))
		}
		for k, s := range run.Specs {
			if specKey(s.Location, s.Via, s.Name) != specs[k].key {
				return nil, append(harms, fmt.Sprintf("process %d's spec %d is %q, the preview's %q", i+1, k+1, s.Name, specs[k].key))
			}
		}
	}
	out := make([]report.Spec, len(specs))
	for k, p := range specs {
		var ran []report.Spec
		for _, run := range runs {
			if s := run.Specs[k]; s.Outcome != report.Disabled {
				ran = append(ran, s)
			}
		}
		switch {
		case len(ran) == 1:
			out[k] = ran[0]
		case len(ran) > 1:
			out[k] = ran[0]
			out[k].Outcome, out[k].Reason = report.Error, fmt.Sprintf("harness: %d processes of the --procs run ran this spec", len(ran))
		case p.selected:
			out[k] = runs[0].Specs[k]
			out[k].Outcome, out[k].Reason = report.Error, "harness: selected, but no process of the --procs run reported it (the exit reason says which process ended without its reports)"
		default:
			out[k] = runs[0].Specs[k]
		}
	}
	return out, harms
}

// readProc reads what a process of a --procs run left in its folder.
func readProc(dir string) (*report.Run, *report.Report, error) {
	b, err := os.ReadFile(filepath.Join(dir, judgeFileName))
	if err != nil {
		return nil, nil, err
	}
	var run report.Run
	if err := json.Unmarshal(b, &run); err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", judgeFileName, err)
	}
	rep, err := report.Read(filepath.Join(dir, "report.json"))
	if err != nil {
		return nil, nil, err
	}
	return &run, rep, nil
}

// writeJudgeFile writes run as judge.json into dir (a --procs process).
func writeJudgeFile(dir string, run report.Run) error {
	b, err := json.Marshal(run)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, judgeFileName), b, 0o644)
}
