package proxy_test

import (
	"context"
	"fmt"
	"github.com/prometheus/procfs"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/prism-suite/prism/backends/sdk"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/reference/proxy"
)

// memstore is the memstore plugin binary, built once by TestMain.
var memstore string

// bareArg makes this test binary serve as a plugin that declares no
// capability (the helper-process trick).
const bareArg = "prism-test-bare-plugin"

type bare struct{}

func (bare) Describe() sdk.Description              { return sdk.Description{Name: "bare", Version: "0"} }
func (bare) Limits() sdk.Limits                     { return sdk.Limits{} }
func (bare) Init(context.Context, sdk.Config) error { return nil }
func (bare) Health(context.Context) sdk.Health      { return sdk.Health{Status: sdk.Healthy} }
func (bare) Close(context.Context) error            { return nil }

func TestMain(m *testing.M) {
	if slices.Contains(os.Args, bareArg) {
		os.Exit(sdk.Serve(bare{}))
	}
	if code, ok := serveSick(os.Args); ok {
		os.Exit(code)
	}
	if code, ok := serveTraceHelpers(os.Args); ok {
		os.Exit(code)
	}
	dir, err := os.MkdirTemp("", "prism-proxy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	memstore = filepath.Join(dir, "prism-memstore")
	out, err := exec.Command("go", "build", "-o", memstore, "github.com/prism-suite/prism/backends/memstore/cmd/prism-memstore").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build memstore: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func testConfig(nss ...proxy.Namespace) proxy.Config {
	c := proxy.DefaultConfig()
	c.Listen, c.MetricsListen = "127.0.0.1:0", "127.0.0.1:0"
	c.HealthInterval = 200 * time.Millisecond
	c.Restart = proxy.Backoff{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	c.DrainTimeout = 5 * time.Second
	c.Namespaces = nss
	return c
}

func kvNamespace(name, instance string) proxy.Namespace {
	return proxy.Namespace{Name: name, Pattern: proxy.KeyValue, Plugin: &proxy.PluginSpec{Binary: memstore, Instance: instance}}
}

// start runs a proxy in-process and returns it with a connection to it.
func start(t *testing.T, cfg proxy.Config) (*proxy.Proxy, *grpc.ClientConn) {
	t.Helper()
	return startWith(t, cfg, proxy.WithPluginStderr(io.Discard))
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func nsCtx(ns string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if ns != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, proxy.NamespaceKey, ns)
	}
	return ctx, cancel
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: got %v (%v), want %v", what, got, err, want)
	}
}

func TestRouting(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(kvNamespace("a", ""), kvNamespace("b", "b"),
		proxy.Namespace{Name: "bare", Pattern: proxy.KeyValue, Plugin: &proxy.PluginSpec{Binary: bin, Args: []string{bareArg}}})
	p, conn := start(t, cfg)
	kv := keyvaluev1.NewKeyValueClient(conn)

	ctx, cancel := nsCtx("")
	defer cancel()
	_, err = kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get without a namespace", err, codes.InvalidArgument)
	if !strings.Contains(status.Convert(err).Message(), proxy.NamespaceKey) {
		t.Errorf("Get without a namespace: message %q does not name %s", status.Convert(err).Message(), proxy.NamespaceKey)
	}

	ctx, cancel = nsCtx("nope")
	defer cancel()
	_, err = kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get in an unknown namespace", err, codes.NotFound)

	ctx, cancel = nsCtx("a")
	defer cancel()
	err = conn.Invoke(ctx, "/prism.pubsub.v1.PubSub/Publish", &emptypb.Empty{}, &emptypb.Empty{})
	wantCode(t, "PubSub/Publish in a keyvalue namespace", err, codes.Unimplemented)
	_, err = lifecyclev1.NewLifecycleClient(conn).Stop(ctx, &lifecyclev1.StopRequest{})
	wantCode(t, "Lifecycle/Stop through the proxy", err, codes.Unimplemented)

	ctx, cancel = nsCtx("bare")
	defer cancel()
	_, err = kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get in a namespace whose plugin lacks keyvalue.basic", err, codes.FailedPrecondition)
	if !strings.Contains(status.Convert(err).Message(), "keyvalue.basic") {
		t.Errorf("refusal %q does not name the missing capability", status.Convert(err).Message())
	}

	// Isolation: a and b run separate processes (different instance labels).
	ca, cancelA := nsCtx("a")
	defer cancelA()
	cb, cancelB := nsCtx("b")
	defer cancelB()
	var hdr metadata.MD
	if _, err := kv.Set(ca, &keyvaluev1.SetRequest{Key: "k", Value: []byte("in a")}, grpc.Header(&hdr)); err != nil {
		t.Fatalf("Set in a: %v", err)
	}
	if id := hdr.Get(proxy.RequestIDKey); len(id) != 1 || id[0] == "" {
		t.Errorf("response header %s: got %v, want a generated id", proxy.RequestIDKey, id)
	}
	_, err = kv.Get(cb, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get in b of a key set in a", err, codes.NotFound)
	got, err := kv.Get(metadata.AppendToOutgoingContext(ca, proxy.RequestIDKey, "req-1"), &keyvaluev1.GetRequest{Key: "k"}, grpc.Header(&hdr))
	if err != nil || string(got.GetValue()) != "in a" {
		t.Errorf("Get in a: got %q, %v; want \"in a\"", got.GetValue(), err)
	}
	if id := hdr.Get(proxy.RequestIDKey); len(id) != 1 || id[0] != "req-1" {
		t.Errorf("response header %s: got %v, want the client's req-1", proxy.RequestIDKey, id)
	}

	// Health: one service per namespace, and "" for the proxy.
	hc := healthpb.NewHealthClient(conn)
	for svc, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{
		"": healthpb.HealthCheckResponse_SERVING, "a": healthpb.HealthCheckResponse_SERVING,
		"b": healthpb.HealthCheckResponse_SERVING, "bare": healthpb.HealthCheckResponse_NOT_SERVING,
	} {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != want {
			t.Errorf("health of %q: got %v, %v; want %v", svc, resp.GetStatus(), err, want)
		}
	}

	// Reflection lists the forwarded services.
	rc, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, proxy.KeyValueService) {
		t.Errorf("reflection lists %v, want %s among them", names, proxy.KeyValueService)
	}
	_ = rc.CloseSend()

	// Metrics.
	body := httpGet(t, "http://"+p.MetricsAddr()+"/metrics")
	for _, want := range []string{
		`prism_proxy_requests_total{method="/prism.keyvalue.v1.KeyValue/Get",namespace="a"} 1`,
		`prism_proxy_errors_total{code="NotFound",method="/prism.keyvalue.v1.KeyValue/Get",namespace="b"} 1`,
		`prism_proxy_request_duration_seconds_count{method="/prism.keyvalue.v1.KeyValue/Set",namespace="a"} 1`,
		`prism_proxy_plugin_up{namespace="a",slot="keyvalue"} 1`,
		`prism_proxy_plugin_up{namespace="bare",slot="keyvalue"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pluginPID(t *testing.T, p *proxy.Proxy, ns string) int {
	t.Helper()
	for _, n := range p.Status().Namespaces {
		if n.Name == ns {
			return n.Slots[0].PID
		}
	}
	t.Fatalf("no namespace %q in status", ns)
	return 0
}

func TestRestartsAKilledPluginWithBackoff(t *testing.T) {
	p, conn := start(t, testConfig(kvNamespace("a", "")))
	kv := keyvaluev1.NewKeyValueClient(conn)
	pid := pluginPID(t, p, "a")
	if pid == 0 {
		t.Fatal("no plugin pid")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := nsCtx("a")
	defer cancel()
	began := time.Now()
	_, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get right after SIGKILL", err, codes.Unavailable)
	if d := time.Since(began); d > time.Second {
		t.Errorf("Get right after SIGKILL took %v, want it to fail fast", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Set while restarting: got %v, want Unavailable or success", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin was not restarted within 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling the outcome, not waiting for readiness
	}
	st := p.Status().Namespaces[0].Slots[0]
	if st.Restarts != 1 || st.PID == pid || st.State != "up" {
		t.Errorf("status after restart: %+v; want 1 restart, a new pid, up", st)
	}
	if body := httpGet(t, "http://"+p.MetricsAddr()+"/metrics"); !strings.Contains(body, `prism_proxy_plugin_restarts_total{namespace="a",slot="keyvalue"} 1`) {
		t.Error("/metrics does not count the restart")
	}
}

func TestShutdownDrainsInFlightCalls(t *testing.T) {
	p, conn := start(t, testConfig(kvNamespace("a", "")))
	kv := keyvaluev1.NewKeyValueClient(conn)
	ctx, cancel := nsCtx("a")
	defer cancel()
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	pid := pluginPID(t, p, "a")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	waitStopped(t, pid) // SIGSTOP takes effect asynchronously: a call sent before would still be answered
	done := make(chan error, 1)
	go func() {
		_, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
		done <- err
	}()
	for p.Status().InFlight == 0 {
		select {
		case err := <-done:
			t.Fatalf("the call ended while the plugin was stopped: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	shut := make(chan struct{})
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(sctx)
		close(shut)
	}()
	for !p.Status().Draining {
		time.Sleep(time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("the call in flight at Shutdown: %v", err)
	}
	select {
	case <-shut:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("plugin %d still runs after Shutdown", pid)
	}
}

// waitStopped polls the process table until pid is stopped (state T), or
// fails after five seconds.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		proc, err := procfs.NewProc(pid)
		if err != nil {
			t.Fatalf("read process %d: %v", pid, err)
		}
		st, err := proc.Stat()
		if err != nil {
			t.Fatalf("read process %d: %v", pid, err)
		}
		if st.State == "T" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d not stopped 5s after SIGSTOP (state %s)", pid, st.State)
		}
		time.Sleep(time.Millisecond) // polling the process table, not waiting for readiness
	}
}
