// Command prism-report merges report.json files into one report.html with the
// capability × run matrix, and prints the same matrix as text:
//
//	prism-report -o out/accept out/accept/*/report.json
//
// With --exit it exits with the worst of the reports' exit codes (a failure
// outranks a harness error, which outranks a usage error), so one command can
// gate on several runs.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/prism-suite/prism/acceptance/report"
)

func main() {
	out := flag.String("o", ".", "folder to write report.html into")
	exit := flag.Bool("exit", false, "exit with the worst exit code of the reports")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: prism-report [-o dir] report.json...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(64)
	}
	var reports []*report.Report
	for _, path := range flag.Args() {
		r, err := report.Read(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "prism-report:", err)
			os.Exit(1)
		}
		reports = append(reports, r)
	}
	path, err := report.WriteHTML(*out, reports...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism-report:", err)
		os.Exit(1)
	}
	fmt.Print(report.Matrix(reports))
	fmt.Println("\nmatrix:", path)
	if *exit {
		var codes []int
		for _, r := range reports {
			codes = append(codes, r.ExitCode)
		}
		os.Exit(report.Worst(codes...))
	}
}
