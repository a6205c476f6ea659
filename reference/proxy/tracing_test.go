package proxy_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	memstoredriver "github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/proto/tracing"
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

// receiver is an OTLP/gRPC trace collector on 127.0.0.1 that keeps every
// span it is sent, with its service name.
type receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	addr string

	mu    sync.Mutex
	spans []span
}

type span struct {
	service string
	*tracepb.Span
}

func (s span) traceID() string  { return hex.EncodeToString(s.TraceId) }
func (s span) spanID() string   { return hex.EncodeToString(s.SpanId) }
func (s span) parentID() string { return hex.EncodeToString(s.ParentSpanId) }

func (s span) attr(k string) string {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.GetValue().GetStringValue()
		}
	}
	return ""
}

func (s span) String() string {
	return fmt.Sprintf("%s %q kind=%v span=%s parent=%s", s.service, s.Name, s.Kind, s.spanID(), s.parentID())
}

func startReceiver(t *testing.T) *receiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return r
}

func (r *receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				r.spans = append(r.spans, span{service: service, Span: sp})
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *receiver) all() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// waitFor polls until ok holds for the spans received, or fails after 15 s.
func (r *receiver) waitFor(t *testing.T, what string, ok func([]span) bool) []span {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := r.all()
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 15 s; received %d spans:\n%s", what, len(got), spanList(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func spanList(spans []span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %s trace=%s\n", s, s.traceID())
	}
	return b.String()
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
	rcv := startReceiver(t)
	mr := miniredis.RunT(t)
	endpoint := "http://" + rcv.addr
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
		namespace, backendSpan, pluginService string
		isBackend                             func(span) bool
	}{
		{"mem", "memstore.Set", "prism-memstore", func(s span) bool { return s.Name == "memstore.Set" }},
		{"red", "redis set", "proxy.test", func(s span) bool { return s.attr("db.system") == "redis" || s.attr("db.system.name") == "redis" }},
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
			inTrace := func(all []span) []span {
				var out []span
				for _, s := range all {
					if s.traceID() == trace {
						out = append(out, s)
					}
				}
				return out
			}
			got := inTrace(rcv.waitFor(t, "backend span of trace "+trace, func(all []span) bool {
				return slices.ContainsFunc(inTrace(all), tc.isBackend)
			}))

			method := "/prism.keyvalue.v1.KeyValue/Set"
			byID := map[string]span{}
			for _, s := range got {
				byID[s.spanID()] = s
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
				parent, ok := byID[cur.parentID()]
				if !ok {
					t.Fatalf("the parent %s of %s (want the %s) was not received; trace %s:\n%s", cur.parentID(), cur, st.what, trace, spanList(got))
				}
				if parent.service != st.service || parent.Kind != st.kind {
					t.Fatalf("the parent of %s is %s; want the %s (service %s, kind %v); trace:\n%s", cur, parent, st.what, st.service, st.kind, spanList(got))
				}
				if st.ns {
					if ns := parent.attr(string(tracing.AttrNamespace)); ns != tc.namespace {
						t.Errorf("%s: %s = %q, want %q", st.what, tracing.AttrNamespace, ns, tc.namespace)
					}
					if m := parent.attr(string(tracing.AttrMethod)); m != method {
						t.Errorf("%s: %s = %q, want %q", st.what, tracing.AttrMethod, m, method)
					}
					if id := parent.attr(string(tracing.AttrRequestID)); id == "" {
						t.Errorf("%s: no %s", st.what, tracing.AttrRequestID)
					}
				}
				cur = parent
			}
			if cur.ParentSpanId != nil && len(cur.ParentSpanId) > 0 {
				t.Errorf("the test's root span has a parent %s", cur.parentID())
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
	rcv := startReceiver(t)
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"no OTEL env", nil},
		{"exporter none", []string{tracing.EnvEndpoint + "=http://" + rcv.addr, tracing.EnvExporter + "=none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
			if n := len(rcv.all()); n != 0 {
				t.Errorf("the receiver got %d spans; want none:\n%s", n, spanList(rcv.all()))
			}
		})
	}
}

// TestProxyReplacesTheClientsTraceparent is the other side of
// TestNoTracingWithoutConfig: with tracing on, the plugin gets the
// proxy's forward span as its parent, in the client's trace.
func TestProxyReplacesTheClientsTraceparent(t *testing.T) {
	rcv := startReceiver(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
metrics_listen: "off"
tracing: {endpoint: "http://%s"}
namespaces:
  - name: echo
    pattern: keyvalue
    plugin: {binary: %q, args: [%q]}
`, rcv.addr, os.Args[0], echoTraceArg)
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
	spans := rcv.waitFor(t, "the proxy's forward span", func(all []span) bool {
		return slices.ContainsFunc(all, func(s span) bool { return s.spanID() == got[2] })
	})
	fwd := spans[slices.IndexFunc(spans, func(s span) bool { return s.spanID() == got[2] })]
	if fwd.service != "prism-proxy" || !strings.HasPrefix(fwd.Name, "forward ") {
		t.Errorf("the plugin's parent is %s; want the proxy's forward span", fwd)
	}
}
