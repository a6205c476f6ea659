// Command prism-report merges report.json files into one report.html with the
// capability × run matrix, and prints the same matrix as text:
//
//	prism-report -o out/accept out/accept/*/report.json
//
// With --exit it exits with the worst of the reports' exit codes (a failure
// outranks a harness error, which outranks a usage error), so one command can
// gate on several runs. With --expect N (sharded CI: one report per job) a
// report that is missing or unreadable, or fewer than N reports, is a harness
// error (exit 2 unless something failed): a shard that never uploaded its
// report must not pass the gate.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/prism-suite/prism/acceptance/report"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("prism-report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", ".", "folder to write report.html into")
	exit := fs.Bool("exit", false, "exit with the worst exit code of the reports")
	expect := fs.Int("expect", 0, "the number of reports there must be (one per shard); a missing or unreadable one is a harness error (exit 2); implies --exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: prism-report [-o dir] [--exit] [--expect N] report.json...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return report.ExitUsage
	}
	if fs.NArg() == 0 && *expect == 0 {
		fs.Usage()
		return report.ExitUsage
	}
	var (
		reports []*report.Report
		missing []string
	)
	for _, path := range fs.Args() {
		r, err := report.Read(path)
		if err != nil {
			if *expect == 0 {
				fmt.Fprintln(stderr, "prism-report:", err)
				return report.ExitFailed
			}
			fmt.Fprintf(stderr, "prism-report: missing shard: %v\n", err)
			missing = append(missing, path)
			continue
		}
		reports = append(reports, r)
	}
	if len(reports) > 0 {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			fmt.Fprintln(stderr, "prism-report:", err)
			return report.ExitFailed
		}
		path, err := report.WriteHTML(*out, reports...)
		if err != nil {
			fmt.Fprintln(stderr, "prism-report:", err)
			return report.ExitFailed
		}
		fmt.Fprint(stdout, report.Matrix(reports))
		fmt.Fprintln(stdout, "\nmatrix:", path)
	}
	if !*exit && *expect == 0 {
		return report.ExitOK
	}
	var codes []int
	for _, r := range reports {
		codes = append(codes, r.ExitCode)
	}
	if *expect > 0 && len(reports) < *expect {
		fmt.Fprintf(stderr, "prism-report: error: %d of %d expected reports read (%d missing or unreadable)\n",
			len(reports), *expect, *expect-len(reports))
		codes = append(codes, report.ExitError)
	}
	if len(missing) > 0 {
		codes = append(codes, report.ExitError)
	}
	return report.Worst(codes...)
}
