// Command prism-mutant serves a reference plugin with one deliberate defect,
// to check that the suites catch it:
//
//	prism-accept --plugin bin/prism-mutant --plugin-arg=--mutant=lost-delete
//
// The mutant is named by --mutant or PRISM_MUTANT; --list prints them all.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/mutant"
	"github.com/prism-suite/prism/backends/sdk"
)

func main() {
	name := flag.String("mutant", os.Getenv("PRISM_MUTANT"), "the mutant to serve")
	list := flag.Bool("list", false, "list the mutants and exit")
	flag.Parse()
	if *list {
		for _, m := range mutant.All() {
			fmt.Printf("%-24s %-16s %s\n", m.Name, m.Breaks, m.Defect)
		}
		return
	}
	m, err := mutant.Lookup(*name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "prism-mutant: %v (see --list)\n", err)
		os.Exit(2)
	}
	os.Exit(sdk.Serve(memstore.New(), sdk.WithUnaryInterceptor(m.Unary())))
}
