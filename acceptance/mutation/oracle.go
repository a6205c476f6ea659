// Package mutation makes the conformance suite the oracle of a mutation run
// (`go tool task mutation`, gremlins): a test file behind the build tag
// prism_mutation in a plugin's package builds the plugin binary from the
// source in the current work dir — which gremlins has mutated — and certifies
// it with [acceptance.Run]. The mutant is killed when the run fails (a spec
// fails, the plugin does not build or does not start); the package's own unit
// tests do not run, so only the suite judges.
//
// A plugin's oracle is two functions in its package:
//
//	//go:build prism_mutation
//
//	func TestMain(m *testing.M) { os.Exit(mutation.Main(m)) }
//
//	func TestMutationOracle(t *testing.T) {
//		mutation.Oracle(t, mutation.Target{Main: ".../cmd/prism-memstore", Backend: backend.Memstore, ...})
//	}
//
// Coverage. gremlins tests only the mutants its coverage run reached, and it
// measures coverage with `go test -cover`, which sees only the test process.
// The code under test runs in the plugin process, so under -cover the oracle
// builds the plugin with -cover as well (-coverpkg: the mutated package), runs
// it with GOCOVERDIR, and Main appends what the plugin processes covered to the
// test's cover profile after the tests ran. A plugin process that is killed
// instead of exiting writes no counters, so coverage can only be under-counted
// (a mutant reported NOT COVERED that the suite in fact reaches), never over.
package mutation

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance"
	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/harness/backend"
)

// OracleTest is the name every oracle test has; Main runs only it.
const OracleTest = "TestMutationOracle"

// coverDir is where the plugin processes write their coverage counters
// (GOCOVERDIR), set by Main when the test binary runs under -cover; coverPkg
// is the package the oracle covers, set by Oracle.
var coverDir, coverPkg string

// Main is a TestMain for a package's oracle. It runs only [OracleTest] (unless
// -run says otherwise), stops the suite at its first failed spec
// (-ginkgo.fail-fast, unless set: a mutant is killed as soon as one spec
// fails), and, under -cover, adds the plugin processes' coverage to the
// test's cover profile. It returns the exit code for os.Exit.
func Main(m *testing.M) int {
	flag.Parse()
	if f := flag.Lookup("test.run"); f != nil && f.Value.String() == "" {
		_ = f.Value.Set("^" + OracleTest + "$")
	}
	if !flagSet("ginkgo.fail-fast") {
		if err := flag.Set("ginkgo.fail-fast", "true"); err != nil {
			fmt.Fprintln(os.Stderr, "mutation:", err)
			return 1
		}
	}
	if testing.CoverMode() != "" {
		dir, err := os.MkdirTemp("", "prism-mutation-cover-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "mutation: create cover dir:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		coverDir = dir
	}
	code := m.Run() // writes the test's cover profile before it returns
	if coverDir != "" {
		if err := mergeCoverage(coverDir); err != nil {
			fmt.Fprintln(os.Stderr, "mutation:", err)
			return 1
		}
	}
	return code
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// Target is what an oracle builds and certifies.
type Target struct {
	// Main is the import path of the plugin's main package.
	Main string
	// Backend is the backend the plugin talks to; redis and nats run
	// embedded (miniredis, nats-server in-process), so no Docker is needed.
	Backend backend.Kind
	// CoverPkg is the import path of the package being mutated: under -cover
	// the plugin is built with -coverpkg=CoverPkg,Main (a binary writes its
	// counters at exit only when its main package is instrumented too).
	CoverPkg string
	// LabelFilter selects the specs (Ginkgo label filter); "" runs them all.
	LabelFilter string
	// Certified lists capabilities that must be certified: a run that
	// certifies less (a mutant that makes the plugin declare fewer
	// capabilities, skipping their specs) is killed too.
	Certified []string
}

// Oracle builds t's plugin from the source in the current work dir and
// certifies it with the suite; t fails (the mutant is killed) when the
// plugin does not build, the run exits non-zero, or a capability in
// Target.Certified is not certified.
func Oracle(t *testing.T, tg Target) {
	plugin := filepath.Join(t.TempDir(), filepath.Base(tg.Main))
	args := []string{"build", "-o", plugin}
	var env []string
	if coverDir != "" {
		coverPkg = tg.CoverPkg
		args = append(args, "-cover", "-covermode="+testing.CoverMode(), "-coverpkg="+tg.CoverPkg+","+tg.Main)
		env = append(env, "GOCOVERDIR="+coverDir)
	}
	build := exec.Command("go", append(args, tg.Main)...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", tg.Main, err, out)
	}
	cfg := acceptance.DefaultConfig()
	cfg.Plugin = plugin
	cfg.PluginEnv = env
	cfg.Backend = tg.Backend
	if tg.Backend != backend.Memstore {
		cfg.Backends.Provider = backend.Embedded
	}
	cfg.ReportDir = t.TempDir()
	if tg.LabelFilter != "" {
		if err := flag.Set("ginkgo.label-filter", tg.LabelFilter); err != nil {
			t.Fatalf("label filter %q: %v", tg.LabelFilter, err)
		}
	}
	rep := acceptance.Run(t, cfg)
	if rep.ExitCode != report.ExitOK {
		return // failed already; with fail-fast the later capabilities are "not tested"
	}
	for _, c := range tg.Certified {
		if got := rep.Verdict(c); got != report.Certified {
			t.Errorf("%s: %q, want certified", c, got)
		}
	}
}

// mergeCoverage appends the coverage the plugin processes wrote into dir to
// the test's cover profile (-test.coverprofile), which go test then merges
// into the profile it was asked for.
func mergeCoverage(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return nil // no plugin process exited cleanly: nothing to add
	}
	f := flag.Lookup("test.coverprofile")
	if f == nil || f.Value.String() == "" {
		return nil
	}
	profile := f.Value.String()
	if o := flag.Lookup("test.outputdir"); o != nil && o.Value.String() != "" && !filepath.IsAbs(profile) {
		profile = filepath.Join(o.Value.String(), profile)
	}
	text := filepath.Join(dir, "plugin.cover")
	if out, err := exec.Command("go", "tool", "covdata", "textfmt", "-i="+dir, "-o="+text).CombinedOutput(); err != nil {
		return fmt.Errorf("convert plugin coverage: %v\n%s", err, out)
	}
	data, err := os.ReadFile(text)
	if err != nil {
		return fmt.Errorf("read plugin coverage: %w", err)
	}
	var lines bytes.Buffer
	covered := map[string][]block{} // file name in the package dir -> blocks run
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "mode:") {
			continue
		}
		lines.WriteString(line + "\n")
		if b, file, ok := parseBlock(line); ok && b.count > 0 && coverPkg != "" && path.Dir(file) == coverPkg {
			covered[path.Base(file)] = append(covered[path.Base(file)], b)
		}
	}
	for file, blocks := range covered {
		for _, b := range caseBlocks(file, blocks) {
			fmt.Fprintf(&lines, "%s/%s:%d.%d,%d.%d 0 1\n", coverPkg, file, b.startLine, b.startCol, b.endLine, b.endCol)
		}
	}
	out, err := os.OpenFile(profile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open cover profile: %w", err)
	}
	if _, err := out.Write(lines.Bytes()); err != nil {
		out.Close()
		return fmt.Errorf("append plugin coverage: %w", err)
	}
	return out.Close()
}

// block is a covered block of a cover profile.
type block struct{ startLine, startCol, endLine, endCol, count int }

func (b block) contains(line, col int) bool {
	return (line > b.startLine || line == b.startLine && col >= b.startCol) &&
		(line < b.endLine || line == b.endLine && col <= b.endCol)
}

// parseBlock parses a profile line "file:l.c,l.c stmts count".
func parseBlock(line string) (block, string, bool) {
	var b block
	var stmts int
	i := strings.LastIndex(line, ":")
	if i < 0 {
		return b, "", false
	}
	if _, err := fmt.Sscanf(line[i+1:], "%d.%d,%d.%d %d %d", &b.startLine, &b.startCol, &b.endLine, &b.endCol, &stmts, &b.count); err != nil {
		return b, "", false
	}
	return b, line[:i], true
}

// caseBlocks returns blocks for the case expressions of the switches in file
// (in the current dir) that ran. Go's cover profile has no block for a case
// expression ("case n > max:"), only for the clause's body, so gremlins
// reports every mutant of one NOT COVERED and never runs it. A switch's
// cases are evaluated in order until one matches, so the expression of
// clause i ran when the body of clause i or of any later clause ran.
func caseBlocks(file string, covered []block) []block {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		return nil
	}
	ran := func(from, to token.Pos) bool { // a covered block starts within [from, to]
		a, z := fset.Position(from), fset.Position(to)
		for _, b := range covered {
			after := b.startLine > a.Line || b.startLine == a.Line && b.startCol >= a.Column
			before := b.startLine < z.Line || b.startLine == z.Line && b.startCol <= z.Column
			if after && before {
				return true
			}
		}
		return false
	}
	var out []block
	ast.Inspect(f, func(n ast.Node) bool {
		sw, ok := n.(*ast.SwitchStmt)
		if !ok {
			return true
		}
		later := false
		for i := len(sw.Body.List) - 1; i >= 0; i-- {
			cc := sw.Body.List[i].(*ast.CaseClause)
			later = later || ran(cc.Colon, cc.End())
			if later && len(cc.List) > 0 {
				a, z := fset.Position(cc.Case), fset.Position(cc.Colon)
				out = append(out, block{startLine: a.Line, startCol: a.Column, endLine: z.Line, endCol: z.Column, count: 1})
			}
		}
		return true
	})
	return out
}
