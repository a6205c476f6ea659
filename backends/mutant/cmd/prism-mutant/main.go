// Command prism-mutant serves a reference plugin with one deliberate defect,
// to check that the suites catch it:
//
//	prism-accept --plugin bin/prism-mutant --plugin-arg=--mutant=lost-delete
//	prism-accept --plugin bin/prism-mutant --plugin-arg=--mutant=redeliver-acked --plugin-arg=--base=nats --backend nats
//
// The mutant is named by --mutant or PRISM_MUTANT; --list prints them all.
// --base picks the reference plugin it wraps (default: the mutant's own base,
// memstore unless the defect needs another); nats needs --backend nats,
// redis --backend redis.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/mutant"
	"github.com/prism-suite/prism/backends/nats"
	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
)

func main() {
	name := flag.String("mutant", os.Getenv("PRISM_MUTANT"), "the mutant to serve")
	base := flag.String("base", "", "the plugin the mutant wraps: memstore, nats or redis (default: the mutant's base)")
	list := flag.Bool("list", false, "list the mutants and exit")
	flag.Parse()
	if *list {
		for _, m := range mutant.All() {
			fmt.Printf("%-28s %-16s %-9s %s\n", m.Name, m.Breaks, m.BaseOrDefault(), m.Defect)
		}
		return
	}
	m, err := mutant.Lookup(*name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "prism-mutant: %v (see --list)\n", err)
		os.Exit(2)
	}
	if *base == "" {
		*base = m.BaseOrDefault()
	}
	var d sdk.Driver
	switch *base {
	case "memstore":
		d = memstore.New()
	case "nats":
		d = nats.New()
	case "redis":
		d = redis.New()
	default:
		fmt.Fprintf(os.Stderr, "prism-mutant: --base %q is not memstore, nats or redis\n", *base)
		os.Exit(2)
	}
	var opts []sdk.ServerOption
	if u := m.Unary(); u != nil {
		opts = append(opts, sdk.WithUnaryInterceptor(u))
	}
	if s := m.Stream(); s != nil {
		opts = append(opts, sdk.WithStreamInterceptor(s))
	}
	os.Exit(sdk.Serve(d, opts...))
}
