package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	memstoredriver "github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
	adminv1 "github.com/prism-suite/prism/proto/prism/admin/v1"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/proto/tracing"
	"github.com/prism-suite/prism/proto/tracing/otlptest"
	"github.com/prism-suite/prism/reference/client"
	"github.com/prism-suite/prism/reference/proxy"
)

// Helper-process markers: the test binary re-run as prism-proxy, as the
// redis plugin, and as a memstore plugin that answers with the traceparent
// it received.
const (
	proxyMainArg   = "prism-test-proxy-main"
	redisPluginArg = "prism-test-redis-plugin"
	echoTraceArg   = "prism-test-echo-trace-plugin"
)

// serveTraceHelpers runs the helper processes of this file.
func serveTraceHelpers(args []string) (int, bool) {
	switch {
	case len(args) > 1 && args[1] == proxyMainArg:
		return proxy.Main(args[2:], os.Stderr), true
	case slices.Contains(args, redisPluginArg):
		return sdk.Serve(redis.New()), true
	case slices.Contains(args, echoTraceArg):
		return sdk.Serve(memstoredriver.New(), sdk.WithUnaryInterceptor(echoTraceparent)), true
	}
	return 0, false
}

// receivedTraceparentKey is the trailer in which the echo plugin returns
// the traceparent it received.
const receivedTraceparentKey = "x-test-received-traceparent"

func echoTraceparent(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	_ = grpc.SetTrailer(ctx, metadata.Pairs(receivedTraceparentKey, strings.Join(md.Get("traceparent"), ",")))
	return h(ctx, req)
}

// runProxyProcess starts this test binary as prism-proxy with config
// (YAML) and env added to its environment, and returns its gRPC address.
func runProxyProcess(t *testing.T, config string, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	cfgPath, addrPath := filepath.Join(dir, "proxy.yaml"), filepath.Join(dir, "addrs.json")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd := exec.Command(os.Args[0], proxyMainArg, "--config", cfgPath, "--addr-file", addrPath)
	cmd.Env = append(withoutOTEL(os.Environ()), env...)
	cmd.Stderr = &lockedWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prism-proxy stderr:\n%s", cmd.Stderr.(*lockedWriter).String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(addrPath); err == nil {
			var a proxy.Addrs
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatal(err)
			}
			return a.GRPC
		}
		if time.Now().After(deadline) {
			t.Fatalf("prism-proxy wrote no address within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// withoutOTEL drops the OTEL_* variables of the test's own environment.
func withoutOTEL(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, "OTEL_") })
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// waitServing polls the proxy's health of namespace until SERVING.
func waitServing(t *testing.T, c *client.Client, namespace string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Health(context.Background(), namespace)
		if err == nil && st.String() == "SERVING" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s not SERVING within 30 s: %v %v", namespace, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTraceClientProxyPluginBackend runs a real prism-proxy process with a
// memstore plugin process and a redis plugin process (over miniredis), all
// exporting to an OTLP receiver in this test, and a traced client: each
// call is one trace whose spans chain client → proxy server → proxy
// forward → plugin server → backend, carrying namespace and method.
func TestTraceClientProxyPluginBackend(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	mr := miniredis.RunT(t)
	endpoint := rcv.Endpoint()
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
metrics_listen: "off"
health_interval: 200ms
namespaces:
  - name: mem
    pattern: keyvalue
    plugin: {binary: %q}
  - name: red
    pattern: keyvalue
    plugin: {binary: %q, args: [%q], config: {address: %q}}
`, memstore, os.Args[0], redisPluginArg, mr.Addr())
	addr := runProxyProcess(t, cfg, tracing.EnvEndpoint+"="+endpoint)

	tr, err := tracing.Start(context.Background(), tracing.Config{Endpoint: endpoint}, "trace-test-client")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(addr, client.WithNamespace("mem"), client.WithTracing(tr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer tr.Shutdown(context.Background())
	waitServing(t, c, "mem")
	waitServing(t, c, "red")

	for _, tc := range []struct {
		namespace, pluginService string
		isBackend                func(otlptest.Span) bool
	}{
		{"mem", "prism-memstore", func(s otlptest.Span) bool { return s.Name == "memstore.Set" }},
		// The redis plugin is this test binary (redisPluginArg): its service name is the binary's.
		{"red", "proxy.test", func(s otlptest.Span) bool {
			return s.Attr("db.system") == "redis" || s.Attr("db.system.name") == "redis"
		}},
	} {
		t.Run(tc.namespace, func(t *testing.T) {
			ctx, root := tr.Tracer().Start(context.Background(), "test "+tc.namespace)
			err := c.Namespace(tc.namespace).KeyValue().Set(ctx, "k", []byte("v"))
			root.End()
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			trace := root.SpanContext().TraceID().String()
			inTrace := func(all []otlptest.Span) []otlptest.Span {
				var out []otlptest.Span
				for _, s := range all {
					if s.TraceID() == trace {
						out = append(out, s)
					}
				}
				return out
			}
			// Each process exports in batches of its own: wait until the
			// backend span and every ancestor up to a root have arrived.
			got := inTrace(rcv.WaitFor(t, "backend span of trace "+trace+" with its ancestors", 15*time.Second, func(all []otlptest.Span) bool {
				tr := inTrace(all)
				i := slices.IndexFunc(tr, tc.isBackend)
				if i < 0 {
					return false
				}
				ids := map[string]otlptest.Span{}
				for _, s := range tr {
					ids[s.SpanID()] = s
				}
				for cur := tr[i]; cur.ParentID() != ""; {
					p, ok := ids[cur.ParentID()]
					if !ok {
						return false
					}
					cur = p
				}
				return true
			}))

			method := "/prism.keyvalue.v1.KeyValue/Set"
			byID := map[string]otlptest.Span{}
			for _, s := range got {
				byID[s.SpanID()] = s
			}
			be := got[slices.IndexFunc(got, tc.isBackend)]
			// Walk up from the backend span; every step must be the one we want.
			steps := []struct {
				what    string
				service string
				kind    tracepb.Span_SpanKind
				ns      bool
			}{
				{"plugin server span", tc.pluginService, tracepb.Span_SPAN_KIND_SERVER, true},
				{"proxy forward span", "prism-proxy", tracepb.Span_SPAN_KIND_CLIENT, true},
				{"proxy server span", "prism-proxy", tracepb.Span_SPAN_KIND_SERVER, true},
				{"client span", "trace-test-client", tracepb.Span_SPAN_KIND_CLIENT, false},
				{"test's root span", "trace-test-client", tracepb.Span_SPAN_KIND_INTERNAL, false},
			}
			cur := be
			for _, st := range steps {
				parent, ok := byID[cur.ParentID()]
				if !ok {
					t.Fatalf("the parent %s of %s (want the %s) was not received; trace %s:\n%s", cur.ParentID(), cur, st.what, trace, otlptest.List(got))
				}
				if parent.Service != st.service || parent.Kind != st.kind {
					t.Fatalf("the parent of %s is %s; want the %s (service %s, kind %v); trace:\n%s", cur, parent, st.what, st.service, st.kind, otlptest.List(got))
				}
				if st.ns {
					if ns := parent.Attr(string(tracing.AttrNamespace)); ns != tc.namespace {
						t.Errorf("%s: %s = %q, want %q", st.what, tracing.AttrNamespace, ns, tc.namespace)
					}
					if m := parent.Attr(string(tracing.AttrMethod)); m != method {
						t.Errorf("%s: %s = %q, want %q", st.what, tracing.AttrMethod, m, method)
					}
					if id := parent.Attr(string(tracing.AttrRequestID)); id == "" {
						t.Errorf("%s: no %s", st.what, tracing.AttrRequestID)
					}
				}
				cur = parent
			}
			if cur.ParentSpanId != nil && len(cur.ParentSpanId) > 0 {
				t.Errorf("the test's root span has a parent %s", cur.ParentID())
			}
		})
	}
}

// TestNoTracingWithoutConfig runs a real prism-proxy process without OTEL
// configuration (and with OTEL_TRACES_EXPORTER=none next to an endpoint)
// in front of a plugin that returns the traceparent it received: the
// client's traceparent reaches the plugin untouched (the proxy made no
// span of its own: no handler ran), and nothing reaches the receiver.
func TestNoTracingWithoutConfig(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"no OTEL env", nil},
		{"exporter none", []string{tracing.EnvEndpoint + "=" + rcv.Endpoint(), tracing.EnvExporter + "=none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := fmt.Sprintf(`listen: 127.0.0.1:0
metrics_listen: "off"
namespaces:
  - name: echo
    pattern: keyvalue
    plugin: {binary: %q, args: [%q]}
`, os.Args[0], echoTraceArg)
			addr := runProxyProcess(t, cfg, tc.env...)
			c, err := client.New(addr, client.WithNamespace("echo"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitServing(t, c, "echo")
			const sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", sent)
			var trl metadata.MD
			kv := c.Conn()
			ctx = metadata.AppendToOutgoingContext(ctx, proxy.NamespaceKey, "echo")
			if err := kv.Invoke(ctx, "/prism.keyvalue.v1.KeyValue/Set", &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}, new(keyvaluev1.SetResponse), grpc.Trailer(&trl)); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(trl.Get(receivedTraceparentKey), ","); got != sent {
				t.Errorf("the plugin received traceparent %q; want the client's %q, untouched", got, sent)
			}
			if n := len(rcv.Spans()); n != 0 {
				t.Errorf("the receiver got %d spans; want none:\n%s", n, otlptest.List(rcv.Spans()))
			}
		})
	}
}

// TestProxyReplacesTheClientsTraceparent is the other side of
// TestNoTracingWithoutConfig: with tracing on, the plugin gets the
// proxy's forward span as its parent, in the client's trace.
func TestProxyReplacesTheClientsTraceparent(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
metrics_listen: "off"
tracing: {endpoint: "%s"}
namespaces:
  - name: echo
    pattern: keyvalue
    plugin: {binary: %q, args: [%q]}
`, rcv.Endpoint(), os.Args[0], echoTraceArg)
	addr := runProxyProcess(t, cfg)
	c, err := client.New(addr, client.WithNamespace("echo"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitServing(t, c, "echo")
	const traceID, clientSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-"+clientSpan+"-01", proxy.NamespaceKey, "echo")
	var trl metadata.MD
	if err := c.Conn().Invoke(ctx, "/prism.keyvalue.v1.KeyValue/Set", &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}, new(keyvaluev1.SetResponse), grpc.Trailer(&trl)); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.Join(trl.Get(receivedTraceparentKey), ","), "-")
	if len(got) != 4 || got[1] != traceID || got[2] == clientSpan {
		t.Fatalf("the plugin received traceparent %q; want trace %s with the proxy's forward span as parent", strings.Join(got, "-"), traceID)
	}
	spans := rcv.WaitFor(t, "the proxy's forward span", 15*time.Second, func(all []otlptest.Span) bool {
		return slices.ContainsFunc(all, func(s otlptest.Span) bool { return s.SpanID() == got[2] })
	})
	fwd := spans[slices.IndexFunc(spans, func(s otlptest.Span) bool { return s.SpanID() == got[2] })]
	if fwd.Service != "prism-proxy" || !strings.HasPrefix(fwd.Name, "forward ") {
		t.Errorf("the plugin's parent is %s; want the proxy's forward span", fwd)
	}
}

// TestTraceThroughABuiltin: a builtin driver has no socket, stats handler
// or context values between the proxy and the SDK; the SDK's in-process
// server span continues the forward span from the traceparent the proxy
// injects, and the driver's span is its child.
func TestTraceThroughABuiltin(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := tracing.NewWithExporter(exp, "prism-proxy")
	_, conn := startWith(t, testConfig(builtinNamespace("orders", "memstore")), proxy.WithTracing(tr),
		proxy.WithBuiltin("memstore", func() sdk.Driver { return memstoredriver.New() }))
	ctx, cancel := nsCtx("orders")
	defer cancel()
	if _, err := keyvaluev1.NewKeyValueClient(conn).Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	var all []string
	for _, s := range exp.GetSpans().Snapshots() {
		all = append(all, fmt.Sprintf("%s kind=%v span=%s parent=%s", s.Name(), s.SpanKind(), s.SpanContext().SpanID(), s.Parent().SpanID()))
		if s.SpanKind() == oteltrace.SpanKindServer && s.Parent().IsValid() {
			byName["sdk server"] = s
		} else {
			byName[s.Name()] = s
		}
	}
	chain := []string{"memstore.Set", "sdk server", "forward prism.keyvalue.v1.KeyValue/Set", "prism.keyvalue.v1.KeyValue/Set"}
	for i := 0; i+1 < len(chain); i++ {
		child, parent := byName[chain[i]], byName[chain[i+1]]
		if child == nil || parent == nil || child.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Fatalf("want %s as the child of %s; spans:\n%s", chain[i], chain[i+1], strings.Join(all, "\n"))
		}
	}
	srv := byName["sdk server"]
	for _, a := range srv.Attributes() {
		if a.Key == tracing.AttrNamespace && a.Value.AsString() != "orders" {
			t.Errorf("the SDK's span has namespace %q, want orders", a.Value.AsString())
		}
	}
}

// TestShippedBinariesRegisterNoCompressor: no package linked into
// prism-proxy or prismctl registers gzip with gRPC (as otlptracegrpc
// does), which would make every call of the proxy, and of its clients,
// carry and parse grpc-accept-encoding whether tracing is on or off.
func TestShippedBinariesRegisterNoCompressor(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/prism-suite/prism/reference/cmd/prism-proxy",
		"github.com/prism-suite/prism/reference/cmd/prismctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if slices.Contains(strings.Fields(string(out)), "google.golang.org/grpc/encoding/gzip") {
		t.Error("prism-proxy or prismctl links google.golang.org/grpc/encoding/gzip: every gRPC call then advertises it (go mod why -m, go list -deps to find who imports it)")
	}
}

// TestTraceThroughANamespaceTheAdminAPICreated: a plugin host the admin API
// starts while the proxy serves is traced like one from the config file.
func TestTraceThroughANamespaceTheAdminAPICreated(t *testing.T) {
	r := newAdminRig(t)
	exp := tracetest.NewInMemoryExporter()
	r.opts = []proxy.Option{proxy.WithTracing(tracing.NewWithExporter(exp, "prism-proxy")),
		proxy.WithBuiltin("memstore", func() sdk.Driver { return memstoredriver.New() })}
	_, kv, admin := r.start(t)
	if _, err := admin.CreateNamespace(r.ctx(t, r.adminTk), &adminv1.CreateNamespaceRequest{
		Spec: "name: live\npattern: keyvalue\nplugin: {builtin: memstore}\n"}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Set(r.data(t, "live"), &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	var forward, backend sdktrace.ReadOnlySpan
	var all []string
	for _, s := range exp.GetSpans().Snapshots() {
		all = append(all, s.Name())
		switch s.Name() {
		case "forward prism.keyvalue.v1.KeyValue/Set":
			forward = s
		case "memstore.Set":
			backend = s
		}
	}
	if forward == nil || backend == nil || backend.SpanContext().TraceID() != forward.SpanContext().TraceID() {
		t.Fatalf("want the forward span and memstore's span in one trace; spans: %v", all)
	}
}
