package acceptance

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/kballard/go-shellquote"
	"github.com/onsi/ginkgo/v2/types"
)

// SuiteDescription is the description prism-accept and Run give Ginkgo's
// RunSpecs. Ginkgo matches a --ginkgo.focus against it, a space, and the
// spec's full text.
const SuiteDescription = "Prism acceptance"

// envPrefixes name the environment variables that shape a run (backend
// images and binaries, external addresses, pulling, testcontainers, the
// Docker daemon); reproduce commands carry them.
var envPrefixes = []string{"PRISM_", "TESTCONTAINERS_", "DOCKER_"}

// secretMarkers are parts of an environment variable's name that mark it as
// a secret: it is left out of reproduce commands, and named as left out.
var secretMarkers = []string{"PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "_KEY"}

// commandLine reproduces a prism-accept run as a shell command: the
// environment variables that shape it (secrets left out; their names are
// returned), the executable, and every flag set on fs (the seed always)
// except those the report adds itself: the focus and the report folder.
func commandLine(exe string, fs *flag.FlagSet, environ []string, cfg Config) (string, []string) {
	var env, leftOut []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(envPrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		if slices.ContainsFunc(secretMarkers, func(m string) bool { return strings.Contains(name, m) }) {
			leftOut = append(leftOut, name)
			continue
		}
		env = append(env, kv)
	}
	slices.Sort(env)
	slices.Sort(leftOut)
	var args []string
	if len(env) > 0 {
		args = append(append(args, "env"), env...)
	}
	args = append(args, exe)
	seen := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "ginkgo.focus", "ginkgo.focus-file", "report-dir", "plugin-arg":
			return // added by the report, or repeatable (below)
		case "seed":
			seen = true
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	for _, a := range cfg.PluginArgs {
		args = append(args, "--plugin-arg="+a)
	}
	if !seen {
		args = append(args, fmt.Sprintf("--seed=%d", cfg.Seed))
	}
	return shellquote.Join(args...), leftOut
}

// executable is how a reproduce command names prism-accept: as it was run
// when that was a path, else by name (on PATH).
func executable() string {
	if strings.ContainsRune(os.Args[0], filepath.Separator) {
		return os.Args[0]
	}
	return "prism-accept"
}

// runCommand is the command that reproduces the whole run: the base command
// with the run's focus and report folder.
func runCommand(base string, sc types.SuiteConfig, reportDir string) string {
	if base == "" {
		return ""
	}
	var args []string
	for _, f := range sc.FocusStrings {
		args = append(args, "--ginkgo.focus="+f)
	}
	for _, f := range sc.FocusFiles {
		args = append(args, "--ginkgo.focus-file="+f)
	}
	if reportDir != "" {
		args = append(args, "--report-dir="+reportDir)
	}
	return strings.TrimSpace(base + " " + shellquote.Join(args...))
}

// reproduceCommand is the command that runs spec sr alone: the base command,
// focused on the spec's file and line and on its exact full text (both must
// match: with --via both the same It runs twice, once in "via proxy"), with
// reports in a folder of their own so the run's report stays.
func reproduceCommand(base string, sr types.SpecReport, reportDir string) string {
	if base == "" {
		return ""
	}
	loc := sr.LeafNodeLocation
	args := []string{
		fmt.Sprintf("--ginkgo.focus-file=%s:%d", focusFile(loc), loc.LineNumber),
		"--ginkgo.focus=" + SpecFocus(sr.FullText()),
	}
	if reportDir != "" {
		args = append(args, "--report-dir="+filepath.Join(reportDir, "reproduce"))
	}
	return base + " " + shellquote.Join(args...)
}

// SpecFocus is the --ginkgo.focus that matches exactly the spec whose full
// text (containers and leaf, as in SpecReport.FullText) is fullText.
func SpecFocus(fullText string) string {
	return "^" + regexp.QuoteMeta(SuiteDescription+" "+fullText) + "$"
}
