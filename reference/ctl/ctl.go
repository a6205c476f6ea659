// Package ctl is prismctl, a command line over the Go client
// (reference/client) for the reference proxy:
//
//	prismctl kv set KEY VALUE [--ttl 30s]
//	prismctl kv get KEY
//	prismctl kv delete KEY
//	prismctl kv scan PREFIX [--values] [--page-size N]
//	prismctl pubsub publish TOPIC PAYLOAD [--meta k=v]...
//	prismctl pubsub subscribe TOPIC [--queue-group G] [--count N]
//	prismctl health [SERVICE]
//	prismctl registry register IDENTITY [--ttl 30s] [--replace] [--meta k=v]...
//	prismctl registry unregister IDENTITY
//	prismctl registry enumerate [FILTER] [--values] [--page-size N]
//	prismctl registry multicast FILTER PAYLOAD [--meta k=v]... [--at-least-once]
//	prismctl registry receive IDENTITY [--count N] [--ack]
//	prismctl login [--issuer URL] [--client-id prismctl]
//	prismctl logout
//	prismctl admin namespace create|update|delete|get|list|status ...
//	prismctl admin plugin drain|restart ID
//
// FILTER is the registry filter's text form (reference/registry/filter), e.g.
// 'type = "sensor" and floor >= 2'.
//
// with --addr (default $PRISM_ADDR or 127.0.0.1:7070), --namespace (default
// $PRISM_NAMESPACE or "default"), --timeout and --token anywhere on the
// line. Calls carry the token [TokenSource] gives: --token or $PRISM_TOKEN,
// else the token file prismctl login wrote (refreshed before it expires).
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/prism-suite/prism/proto/tracing"
	"github.com/prism-suite/prism/reference/client"
)

const usage = `prismctl talks to a Prism proxy (or a plugin) with the Go client.

Usage:
  prismctl kv set KEY VALUE [--ttl 30s]
  prismctl kv get KEY
  prismctl kv delete KEY
  prismctl kv scan PREFIX [--values] [--page-size N]
  prismctl pubsub publish TOPIC PAYLOAD [--meta k=v]...
  prismctl pubsub subscribe TOPIC [--queue-group G] [--count N]
  prismctl health [SERVICE]        (SERVICE: a namespace, or "" for the proxy)
  prismctl registry register IDENTITY [--ttl 30s] [--replace] [--meta k=v]...
  prismctl registry unregister IDENTITY
  prismctl registry enumerate [FILTER] [--values] [--page-size N]
  prismctl registry multicast FILTER PAYLOAD [--meta k=v]... [--at-least-once]
  prismctl registry receive IDENTITY [--count N] [--ack]
  prismctl login [--issuer URL] [--client-id prismctl]
  prismctl logout
  prismctl admin ...               the proxy's admin API (prismctl admin --help)

  FILTER is the registry filter's text form, e.g. 'type = "sensor" and floor >= 2'
  ("" selects every identity). Register's --meta values are literals of that
  form (1, 1.5, true, "text", ["a", "b"]); anything else is a string. --timeout
  also bounds a multicast, whose exit code is 3 when a target was not delivered.

Flags (anywhere on the line):
  --addr ADDR        proxy address (default $PRISM_ADDR or 127.0.0.1:7070)
  --namespace NS     namespace (default $PRISM_NAMESPACE or "default")
  --timeout D        deadline of each call (default 5s)
  --token T          bearer token of each call (default $PRISM_TOKEN, else the token
                     file of prismctl login: $PRISM_TOKEN_FILE or ~/.prism/token)

login runs the OAuth device flow against --issuer (default $PRISM_ISSUER or
http://127.0.0.1:9400, prism-dev-idp's) as --client-id, prints where to approve,
and saves the token (0600); later calls refresh it before it expires. logout
revokes its refresh token and removes the file.

Traces: with OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4317) set, the
command is one trace, exported over OTLP/gRPC; its id is printed to stderr.

Exit codes: 0 success; 1 the call failed (the gRPC code is printed); 2 bad usage;
3 kv get of a missing key, or health not SERVING.
`

// Exit codes.
const (
	ExitOK      = 0
	ExitFailed  = 1
	ExitUsage   = 2
	ExitMissing = 3
)

type globals struct {
	addr, namespace, token string
	timeout                time.Duration
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Main runs prismctl with args (without the program name) and returns the
// exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "admin" {
		return runAdmin(args[1:], stdout, stderr)
	}
	g := globals{addr: envOr("PRISM_ADDR", "127.0.0.1:7070"), namespace: envOr("PRISM_NAMESPACE", "default"), timeout: client.DefaultTimeout}
	newFS := func(name string) *flag.FlagSet {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.StringVar(&g.addr, "addr", g.addr, "")
		fs.StringVar(&g.namespace, "namespace", g.namespace, "")
		fs.DurationVar(&g.timeout, "timeout", g.timeout, "")
		fs.StringVar(&g.token, "token", "", "")
		return fs
	}
	var (
		ttl        time.Duration
		values     bool
		pageSize   int
		queueGroup string
		count      int
		meta       []string
		reg        registryFlags
		issuer     = envOr(EnvIssuer, DefaultIssuer)
		clientID   = "prismctl"
	)
	fs := newFS("prismctl")
	fs.DurationVar(&ttl, "ttl", 0, "")
	fs.BoolVar(&values, "values", false, "")
	fs.IntVar(&pageSize, "page-size", 0, "")
	fs.StringVar(&queueGroup, "queue-group", "", "")
	fs.IntVar(&count, "count", 0, "")
	fs.Func("meta", "", func(v string) error { meta = append(meta, v); return nil })
	fs.BoolVar(&reg.replace, "replace", false, "")
	fs.BoolVar(&reg.atLeastOnce, "at-least-once", false, "")
	fs.BoolVar(&reg.ack, "ack", false, "")
	fs.StringVar(&issuer, "issuer", issuer, "")
	fs.StringVar(&clientID, "client-id", clientID, "")
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "prismctl: %v\n\n%s", err, usage)
		return ExitUsage
	}
	if *help || len(pos) == 0 {
		fmt.Fprint(stderr, usage)
		if *help {
			return ExitOK
		}
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch {
	case len(pos) == 1 && pos[0] == "login":
		return runLogin(ctx, issuer, clientID, stdout, stderr)
	case len(pos) == 1 && pos[0] == "logout":
		return runLogout(ctx, stdout, stderr)
	}
	tcfg, err := tracing.FromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "prismctl: %v\n", err)
		return ExitUsage
	}
	tr, err := tracing.Start(context.Background(), tcfg, "prismctl")
	if err != nil {
		fmt.Fprintf(stderr, "prismctl: %v\n", err)
		return ExitFailed
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tr.Shutdown(sctx); err != nil {
			fmt.Fprintf(stderr, "prismctl: %v\n", err)
		}
	}()
	opts := []client.Option{client.WithNamespace(g.namespace), client.WithTimeout(g.timeout), client.WithTracing(tr)}
	ts, err := TokenSource(ctx, g.token)
	if err != nil {
		fmt.Fprintf(stderr, "prismctl: %v\n", err)
		return ExitFailed
	}
	if ts != nil {
		opts = append(opts, client.WithTokenSource(ts))
	}
	c, err := client.New(g.addr, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "prismctl: %v\n", err)
		return ExitFailed
	}
	defer c.Close()
	if tr.Enabled() {
		// One trace for the command, whatever calls it makes; its id is
		// what to look up in the trace UI.
		var sp trace.Span
		ctx, sp = tr.Tracer().Start(ctx, "prismctl "+strings.Join(pos[:min(2, len(pos))], " "))
		defer sp.End()
		fmt.Fprintf(stderr, "prismctl: trace %s\n", sp.SpanContext().TraceID())
	}

	want := func(n int, form string) bool {
		if len(pos) != n {
			fmt.Fprintf(stderr, "prismctl: usage: prismctl %s\n", form)
			return false
		}
		return true
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "prismctl: %s: %v\n", client.Code(err), err)
		return ExitFailed
	}
	switch strings.Join(pos[:min(2, len(pos))], " ") {
	case "kv set":
		if !want(4, "kv set KEY VALUE [--ttl D]") {
			return ExitUsage
		}
		var opts []client.SetOption
		if ttl > 0 {
			opts = append(opts, client.WithTTL(ttl))
		}
		if err := c.KeyValue().Set(ctx, pos[2], []byte(pos[3]), opts...); err != nil {
			return fail(err)
		}
	case "kv get":
		if !want(3, "kv get KEY") {
			return ExitUsage
		}
		v, err := c.KeyValue().Get(ctx, pos[2])
		if client.IsNotFound(err) {
			// The message tells a missing key from a namespace the proxy does not serve.
			fmt.Fprintf(stderr, "prismctl: NotFound: %v\n", err)
			return ExitMissing
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s\n", v)
	case "kv delete":
		if !want(3, "kv delete KEY") {
			return ExitUsage
		}
		existed, err := c.KeyValue().Delete(ctx, pos[2])
		if err != nil {
			return fail(err)
		}
		if existed {
			fmt.Fprintf(stdout, "deleted %s\n", pos[2])
		} else {
			fmt.Fprintf(stdout, "%s did not exist\n", pos[2])
		}
	case "kv scan":
		if !want(3, "kv scan PREFIX [--values] [--page-size N]") {
			return ExitUsage
		}
		for e, err := range c.KeyValue().Scan(ctx, pos[2], client.ScanOptions{PageSize: pageSize, Values: values}) {
			if err != nil {
				return fail(err)
			}
			if values {
				fmt.Fprintf(stdout, "%s\t%s\n", e.Key, e.Value)
			} else {
				fmt.Fprintln(stdout, e.Key)
			}
		}
	case "pubsub publish":
		if !want(4, "pubsub publish TOPIC PAYLOAD [--meta k=v]...") {
			return ExitUsage
		}
		md := map[string]string{}
		for _, kv := range meta {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				fmt.Fprintf(stderr, "prismctl: --meta %q is not k=v\n", kv)
				return ExitUsage
			}
			md[k] = v
		}
		id, err := c.PubSub().Publish(ctx, pos[2], []byte(pos[3]), md)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(stdout, id)
	case "pubsub subscribe":
		if !want(3, "pubsub subscribe TOPIC [--queue-group G] [--count N]") {
			return ExitUsage
		}
		sub, err := c.PubSub().Subscribe(ctx, client.Subscription{Topic: pos[2], QueueGroup: queueGroup})
		if err != nil {
			return fail(err)
		}
		defer sub.Close()
		for n := 0; count <= 0 || n < count; n++ {
			m, err := sub.Next()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, io.EOF) {
					return ExitOK
				}
				return fail(err)
			}
			fmt.Fprintf(stdout, "%s\n", m.Payload)
		}
	default:
		if pos[0] == "registry" {
			reg.ttl, reg.values, reg.pageSize, reg.count, reg.meta, reg.timeout = ttl, values, pageSize, count, meta, g.timeout
			return runRegistry(ctx, c, pos, reg, stdout, stderr)
		}
		if pos[0] == "health" && len(pos) <= 2 {
			svc := g.namespace
			if len(pos) == 2 {
				svc = pos[1]
			}
			st, err := c.Health(ctx, svc)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintln(stdout, st)
			if st != healthpb.HealthCheckResponse_SERVING {
				return ExitMissing
			}
			return ExitOK
		}
		fmt.Fprintf(stderr, "prismctl: unknown command %q\n\n%s", strings.Join(pos, " "), usage)
		return ExitUsage
	}
	return ExitOK
}

// parseInterleaved parses flags anywhere among the positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
