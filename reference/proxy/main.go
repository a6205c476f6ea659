package proxy

import (
	"github.com/google/renameio/v2"

	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/bytedance/gopkg/util/gctuner"

	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/handshake"
	"github.com/prism-suite/prism/proto/tracing"

	"github.com/prism-suite/prism/reference/internal/authmutant"
)

const usage = `prism-proxy serves Prism's data API (KeyValue, PubSub) and routes each call,
by its x-prism-namespace metadata, to the plugin serving that namespace: a plugin
process (plugin: {binary: ...}) or a driver linked into the proxy (plugin: {builtin: ...}).

Usage:
  prism-proxy --config proxy.yaml [--addr-file addrs.json]
  prism-proxy --list-builtins          # the linked drivers, one per line
  prism-proxy --serve-builtin NAME     # run a linked driver as a plugin process (prism-accept --via builtin)
  prism-proxy --version

SIGTERM or SIGINT ends open subscriptions with Unavailable, drains in-flight
calls (drain_timeout), stops the plugins and exits 0. Exit code 2: the config is invalid; 1: the proxy could not start.
Traces: a tracing: block in the config, or OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 (OTLP/gRPC;
OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER=none also read); the plugins it launches export there too. Off by default.
Without GOGC in its environment the proxy tunes its garbage collector: GOGC=400 while its heap is
small, collecting at 64 MiB, and Go's default of 100 once the live heap passes 32 MiB.

Flags:
`

// Version is the reference proxy's version: prism-proxy --version prints
// it, the "serving" log line and the --addr-file carry it.
const Version = "0.1.0"

// The proxy's garbage collector: without GOGC in the environment its
// target moves between GCMinPercent and GCMaxPercent so that the heap
// collects when it reaches GCHeapThreshold, as long as the live heap is
// small (gctuner resets the target after every collection from the heap in
// use). At a few MiB of live heap (the proxy under load) it runs at 400:
// five times its live size between collections instead of twice, which cut
// the proxy's CPU per forwarded call by about a quarter at 64 calls in
// flight. Once the live heap passes half the threshold it runs at Go's
// default of 100. A fixed GOGC=400 let the heap of a proxy with a builtin
// driver grow by more than 100 MiB while a subscriber did not read (the
// slow-consumer spec's memory bound).
const (
	GCHeapThreshold = 64 << 20
	GCMaxPercent    = 400
	GCMinPercent    = 100
)

// tuneGC starts the collector's tuning unless GOGC is set in the
// environment (the runtime has read it then and it stays).
func tuneGC() {
	if os.Getenv("GOGC") != "" {
		return
	}
	gctuner.SetMaxGCPercent(GCMaxPercent)
	gctuner.SetMinGCPercent(GCMinPercent)
	gctuner.Tuning(GCHeapThreshold)
}

// Addrs is what --addr-file holds once the proxy listens.
type Addrs struct {
	GRPC    string `json:"grpc"`
	Metrics string `json:"metrics,omitempty"`
	// Admin is the admin API's address (admin.listen), when it is on.
	Admin string `json:"admin,omitempty"`
	PID   int    `json:"pid"`
	// Version is the proxy's [Version].
	Version string `json:"version,omitempty"`
}

// Main is prism-proxy: it loads the config, starts the plugins, serves until
// SIGTERM or SIGINT, then drains and returns the exit code. opts are passed
// to [New] (the main links its builtin drivers with [WithBuiltin]).
func Main(args []string, stderr io.Writer, opts ...Option) int {
	fs := flag.NewFlagSet("prism-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	config := fs.String("config", "", "YAML config file (required)")
	addrFile := fs.String("addr-file", "", "write the listen addresses as JSON to this file once serving")
	logLevel := fs.String("log-level", "", "override the config's log_level")
	version := fs.Bool("version", false, "print the version and exit")
	list := fs.Bool("list-builtins", false, "print the names of the linked builtin drivers, one per line, to stdout and exit")
	serve := fs.String("serve-builtin", "", "serve the linked builtin driver NAME as a plugin process (started by a host, e.g. prism-accept's lifecycle specs)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version {
		fmt.Fprintln(stderr, "prism-proxy", Version)
		return 0
	}
	linked := (&Proxy{}).apply(opts)
	if *list {
		for _, name := range slices.Sorted(maps.Keys(linked)) {
			fmt.Println(name)
		}
		return 0
	}
	if *serve != "" {
		b := linked[*serve]
		if b == nil {
			fmt.Fprintf(stderr, "prism-proxy: --serve-builtin %q is not a linked driver; known: %s\n", *serve, strings.Join(slices.Sorted(maps.Keys(linked)), ", "))
			return 2
		}
		if os.Getenv(handshake.EnvMagic) != handshake.MagicValue {
			fmt.Fprintf(stderr, "prism-proxy --serve-builtin runs the linked driver %s as a plugin process for a host, not by hand:\n"+
				"  prism-accept --via builtin --builtin %s --proxy %s     certify it\n", *serve, *serve, os.Args[0])
			return 1
		}
		return sdk.Serve(b.new(), b.opts...)
	}
	if *config == "" {
		fmt.Fprintln(stderr, "prism-proxy: --config is required")
		fs.Usage()
		return 2
	}
	cfg, err := Load(*config)
	if err != nil {
		fmt.Fprintf(stderr, "prism-proxy: invalid config %s:\n%v\n", *config, err)
		return 2
	}
	if *logLevel != "" {
		cfg.LogLevel = *logLevel
	}
	if !cfg.Tracing.Enabled() {
		// No tracing block: the standard OTEL_* environment decides.
		if cfg.Tracing, err = tracing.FromEnv(os.Getenv); err != nil {
			fmt.Fprintf(stderr, "prism-proxy: %v\n", err)
			return 2
		}
	}
	tuneGC()
	// Test only: a deliberately broken auth for the suite's mutant tests, in
	// a prism_mutants build; the default build has none and reads nothing.
	if err := authmutant.Setup(); err != nil {
		fmt.Fprintf(stderr, "prism-proxy: %v\n", err)
		return 2
	}
	p, err := New(cfg, append([]Option{WithPluginStderr(stderr)}, opts...)...)
	if err != nil {
		fmt.Fprintf(stderr, "prism-proxy: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Listen, not Start: the address file is written while plugins start,
	// so a plugin that hangs in its handshake never delays the proxy.
	if err := p.Listen(ctx); err != nil {
		fmt.Fprintf(stderr, "prism-proxy: %v\n", err)
		_ = p.Shutdown(context.Background())
		return 1
	}
	if *addrFile != "" {
		if err := writeAddrs(*addrFile, Addrs{GRPC: p.Addr(), Metrics: p.MetricsAddr(), Admin: p.AdminAddr(), PID: os.Getpid(), Version: Version}); err != nil {
			fmt.Fprintf(stderr, "prism-proxy: %v\n", err)
			_ = p.Shutdown(context.Background())
			return 1
		}
	}
	code := 0
	select {
	case <-ctx.Done():
	case err := <-p.Err():
		fmt.Fprintf(stderr, "prism-proxy: %v\n", err)
		code = 1
	}
	stop() // a second signal kills at once
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	_ = p.Shutdown(dctx)
	return code
}

// writeAddrs writes a atomically, so a reader never sees half a file.
func writeAddrs(path string, a Addrs) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	if err := renameio.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	return nil
}
