// Command prism-bench measures the plugins against a one-hop gRPC echo in
// the same run and prints a table; see harness/bench. It never fails on a figure.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/bench"
)

func main() {
	bench.ServeEchoIfChild() // the echo baseline re-runs this binary in a process of its own
	o := bench.DefaultOptions()
	flag.StringVar(&o.Memstore, "memstore", o.Memstore, "memstore plugin binary")
	flag.StringVar(&o.Redis, "redis", o.Redis, "redis plugin binary (\"\": no redis series)")
	flag.StringVar(&o.Proxy, "proxy", o.Proxy, "prism-proxy binary (\"\": no via-proxy series)")
	flag.BoolVar(&o.Builtin, "builtin", o.Builtin, "also measure the memstore, redis and nats drivers linked into --proxy as builtins")
	flag.Func("redis-instance", "how Redis is provided: process (redis-server, default), embedded, container", func(v string) error {
		o.RedisProvider = backend.Provider(v)
		return nil
	})
	flag.StringVar(&o.NATS, "nats", o.NATS, "nats plugin binary (\"\": no nats series)")
	flag.Func("nats-instance", "how NATS is provided: embedded (default), process (nats-server), container", func(v string) error {
		o.NATSProvider = backend.Provider(v)
		return nil
	})
	flag.StringVar(&o.Postgres, "postgres", o.Postgres, "postgres plugin binary (\"\": no postgres series)")
	flag.StringVar(&o.PostgresFile, "postgres-file", o.PostgresFile, "the postgres backend file")
	flag.Func("postgres-instance", "how PostgreSQL is provided: process (initdb + postgres, default), container", func(v string) error {
		o.PostgresProvider = backend.Provider(v)
		return nil
	})
	flag.BoolVar(&o.PubSub, "pubsub", o.PubSub, "run the PubSub series")
	flag.BoolVar(&o.Auth, "auth", o.Auth, "run the auth series: memstore Get through --proxy with auth off and on, and token verification on a cache miss")
	flag.BoolVar(&o.Registry, "registry", o.Registry, "run the multicast registry series (through --proxy, memstore slots)")
	flag.Func("concurrency", fmt.Sprintf("comma-separated client concurrencies of the KeyValue series (default %s)", joinInts(o.Concurrency)), func(v string) error {
		cs, err := parseInts(v)
		if err != nil {
			return err
		}
		o.Concurrency = cs
		return nil
	})
	flag.IntVar(&o.Ops, "ops", o.Ops, "measured ops per series")
	flag.BoolVar(&o.KeyValue, "kv", o.KeyValue, "run the KeyValue series (false: e.g. a soak-only run)")
	flag.DurationVar(&o.Soak, "soak", o.Soak, "run the soak series (goal P9) this long per namespace through --proxy, memstore and redis (0: none)")
	flag.IntVar(&o.SoakClients, "soak-clients", o.SoakClients, "clients of the soak series")
	flag.DurationVar(&o.SoakInterval, "soak-interval", o.SoakInterval, "each soak client's time between calls (0: a closed loop)")
	flag.IntVar(&o.SoakConns, "soak-conns", o.SoakConns, "gRPC connections the soak clients share (at most 128 calls each)")
	flag.StringVar(&o.OutDir, "out", o.OutDir, "folder for bench.json and bench.md")
	flag.Parse()
	if _, err := bench.Run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "prism-bench:", err)
		os.Exit(1)
	}
}

// parseInts parses a comma-separated list of positive integers.
func parseInts(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("not a positive integer: %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
