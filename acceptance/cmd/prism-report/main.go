// Command prism-report merges report.json files into one report.html with the
// capability × run matrix:
//
//	prism-report -o out/accept out/accept/*/report.json
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/prism-suite/prism/acceptance/report"
)

func main() {
	out := flag.String("o", ".", "folder to write report.html into")
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
	fmt.Println(path)
}
