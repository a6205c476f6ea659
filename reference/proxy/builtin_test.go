package proxy_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	memstorepkg "github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/proxy"
	"github.com/prism-suite/prism/reference/registry"
)

// watched is memstore that counts its Close calls and whose health the
// test sets.
type watched struct {
	*memstorepkg.Store
	closed  *atomic.Int32
	sick    *atomic.Bool
	hang    *atomic.Bool
	authSaw *atomic.Int32
}

func (w watched) Health(ctx context.Context) sdk.Health {
	if w.hang.Load() {
		<-ctx.Done() // the health check times out
		return sdk.Health{Status: sdk.Unhealthy, Message: "hung"}
	}
	if w.sick.Load() {
		return sdk.Health{Status: sdk.Unhealthy, Message: "the test says so"}
	}
	return w.Store.Health(ctx)
}

func (w watched) Close(ctx context.Context) error {
	w.closed.Add(1)
	return w.Store.Close(ctx)
}

func (w watched) Get(ctx context.Context, key string) ([]byte, error) {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("authorization")) > 0 {
		w.authSaw.Add(1)
	}
	return w.Store.Get(ctx, key)
}

type builtinProbe struct {
	closed, authSaw, started atomic.Int32
	sick, hang               atomic.Bool
}

func (b *builtinProbe) option() proxy.Option {
	return proxy.WithBuiltin("watched", func() sdk.Driver {
		b.started.Add(1)
		return watched{Store: memstorepkg.New(), closed: &b.closed, sick: &b.sick, hang: &b.hang, authSaw: &b.authSaw}
	})
}

func startWith(t *testing.T, cfg proxy.Config, opts ...proxy.Option) (*proxy.Proxy, *grpc.ClientConn) {
	t.Helper()
	p, err := proxy.New(cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	conn := dial(t, p.Addr())
	t.Cleanup(func() { conn.Close() })
	return p, conn
}

func builtinNamespace(name, builtin string) proxy.Namespace {
	return proxy.Namespace{Name: name, Pattern: proxy.KeyValue, Plugin: &proxy.PluginSpec{Builtin: builtin}}
}

// TestUnknownBuiltinListsKnownOnes: a builtin name that is not linked is a
// config error naming the field and the linked drivers.
func TestUnknownBuiltinListsKnownOnes(t *testing.T) {
	var b builtinProbe
	_, err := proxy.New(testConfig(builtinNamespace("orders", "redys")), b.option())
	if err == nil {
		t.Fatal("New with an unknown builtin: got no error")
	}
	want := `namespaces[0] (orders).plugin.builtin: "redys" is not a driver linked into this proxy; known: watched`
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("got %q, want it to contain %q", err, want)
	}
}

// TestBuiltinServesKeyValue: a builtin namespace serves KeyValue end to end
// through the proxy, with the SDK's decode rule, request id and metadata
// filtering; /status says mode builtin with the proxy's pid; Shutdown stops
// the driver.
func TestBuiltinServesKeyValue(t *testing.T) {
	var b builtinProbe
	p, conn := startWith(t, testConfig(builtinNamespace("orders", "watched")), b.option(), proxy.WithPluginStderr(os.Stderr))
	kv := keyvaluev1.NewKeyValueClient(conn)
	ctx, cancel := nsCtx("orders")
	defer cancel()
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	var hdr, trl metadata.MD
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer secret", proxy.RequestIDKey, "rid-b")
	got, err := kv.Get(actx, &keyvaluev1.GetRequest{Key: "k"}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil || string(got.GetValue()) != "v" {
		t.Fatalf("Get: got %q, %v; want v", got.GetValue(), err)
	}
	if id := hdr.Get(proxy.RequestIDKey); len(id) != 1 || id[0] != "rid-b" {
		t.Errorf("header x-request-id: got %q, want [rid-b]", id)
	}
	if id := trl.Get(proxy.RequestIDKey); len(id) != 1 || id[0] != "rid-b" {
		t.Errorf("trailer x-request-id (the driver's echo): got %q, want [rid-b]", id)
	}
	if n := b.authSaw.Load(); n != 0 {
		t.Errorf("the builtin saw authorization metadata %d times; want never", n)
	}
	_, err = kv.Get(ctx, &keyvaluev1.GetRequest{Key: "missing"})
	wantCode(t, "Get of a missing key", err, codes.NotFound)

	// A key that is not UTF-8, sent as raw bytes: InvalidArgument naming
	// the field, as a plugin process answers.
	err = conn.Invoke(ctx, "/prism.keyvalue.v1.KeyValue/Get", &rawMsg{[]byte{0x0a, 0x01, 0xff}}, &rawMsg{}, grpc.ForceCodecV2(rawMsgCodec{}))
	wantCode(t, "Get with a key that is not UTF-8", err, codes.InvalidArgument)
	if err != nil && !strings.Contains(err.Error(), "key") {
		t.Errorf("the InvalidArgument should name the field key: %v", err)
	}

	st := p.Status()
	slot := st.Namespaces[0].Slots[0]
	if slot.Mode != "builtin" || slot.Builtin != "watched" || slot.PID != os.Getpid() || slot.State != "up" {
		b, _ := json.Marshal(slot)
		t.Errorf("/status slot: got %s; want mode builtin, builtin watched, pid %d (the proxy's), state up", b, os.Getpid())
	}
	metrics := httpGet(t, "http://"+p.MetricsAddr()+"/metrics")
	if !strings.Contains(metrics, `prism_proxy_plugin_mode{mode="builtin",namespace="orders",slot="keyvalue"} 1`) {
		t.Errorf("metrics: no prism_proxy_plugin_mode with mode builtin for orders")
	}

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := p.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := b.closed.Load(); n != 1 {
		t.Errorf("driver Close calls after Shutdown: got %d, want 1", n)
	}
}

// TestBuiltinHealth: a builtin answering UNHEALTHY makes its namespace
// NOT_SERVING; one that keeps failing its health checks is not the case
// here (HealthCheck answers), so it is not restarted.
func TestBuiltinHealth(t *testing.T) {
	var b builtinProbe
	_, conn := startWith(t, testConfig(builtinNamespace("orders", "watched")), b.option())
	hc := healthpb.NewHealthClient(conn)
	wait := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		waitHealth(t, hc, "orders", want)
	}
	wait(healthpb.HealthCheckResponse_SERVING)
	b.sick.Store(true)
	wait(healthpb.HealthCheckResponse_NOT_SERVING)
	b.sick.Store(false)
	wait(healthpb.HealthCheckResponse_SERVING)
	if n := b.started.Load(); n != 1 {
		t.Errorf("drivers started: got %d, want 1 (UNHEALTHY is an answer, not a failed check)", n)
	}
}

// rawMsg is a request as bytes.
type rawMsg struct{ b []byte }

type rawMsgCodec struct{}

func (rawMsgCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMsg).b)}, nil
}
func (rawMsgCodec) Unmarshal(d mem.BufferSlice, v any) error {
	v.(*rawMsg).b = d.Materialize()
	return nil
}
func (rawMsgCodec) Name() string { return "proto" }

// TestBuiltinRestartedAfterThreeFailedHealthChecks: a builtin whose
// HealthCheck stops answering is stopped (its driver closed, no process to
// kill) and a fresh driver takes its place after the backoff.
func TestBuiltinRestartedAfterThreeFailedHealthChecks(t *testing.T) {
	var b builtinProbe
	p, conn := startWith(t, testConfig(builtinNamespace("orders", "watched")), b.option())
	kv := keyvaluev1.NewKeyValueClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, proxy.NamespaceKey, "orders")
	b.hang.Store(true)
	for b.started.Load() < 2 {
		if ctx.Err() != nil {
			t.Fatalf("drivers started: %d, want a second one after three failed health checks", b.started.Load())
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	b.hang.Store(false)
	if n := b.closed.Load(); n < 1 {
		t.Errorf("the hung driver was not closed (Close calls %d)", n)
	}
	for {
		_, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Set after the restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	slot := p.Status().Namespaces[0].Slots[0]
	if slot.Restarts != 1 || slot.Mode != "builtin" || slot.PID != os.Getpid() {
		t.Errorf("/status after the restart: restarts %d, mode %s, pid %d; want 1, builtin, %d", slot.Restarts, slot.Mode, slot.PID, os.Getpid())
	}
}

// slowGet is memstore whose Get waits for release (after telling entered).
type slowGet struct {
	*memstorepkg.Store
	entered chan struct{}
	release chan struct{}
	closed  *atomic.Int32
}

func (s slowGet) Get(ctx context.Context, key string) ([]byte, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Store.Get(ctx, key)
}

func (s slowGet) Close(ctx context.Context) error {
	s.closed.Add(1)
	return s.Store.Close(ctx)
}

// TestShutdownDrainsABuiltin: Shutdown lets a unary call in flight on a
// builtin finish, refuses new ones, and then stops the driver.
func TestShutdownDrainsABuiltin(t *testing.T) {
	var closed atomic.Int32
	d := slowGet{Store: memstorepkg.New(), entered: make(chan struct{}, 1), release: make(chan struct{}), closed: &closed}
	p, conn := startWith(t, testConfig(builtinNamespace("orders", "slow")),
		proxy.WithBuiltin("slow", func() sdk.Driver { return d }))
	kv := keyvaluev1.NewKeyValueClient(conn)
	ctx, cancel := nsCtx("orders")
	defer cancel()
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
		got <- err
	}()
	<-d.entered
	shut := make(chan error, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		shut <- p.Shutdown(sctx)
	}()
	// Poll until the proxy refuses new calls: it is draining.
	for {
		_, err := kv.Exists(ctx, &keyvaluev1.ExistsRequest{Key: "k"})
		if err != nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the proxy still accepts calls after Shutdown began")
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if n := closed.Load(); n != 0 {
		t.Fatalf("the driver was closed (%d) with a call in flight", n)
	}
	close(d.release)
	if err := <-got; err != nil {
		t.Errorf("the call in flight during Shutdown: %v, want it to complete", err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := closed.Load(); n != 1 {
		t.Errorf("driver Close calls after Shutdown: got %d, want 1", n)
	}
}

// TestRegistryOnBuiltinSlots: the registry pattern's slots may name
// builtins too; the coordinator reaches them over the in-process channel.
func TestRegistryOnBuiltinSlots(t *testing.T) {
	var b builtinProbe
	ns := proxy.Namespace{Name: "devices", Pattern: proxy.Registry, Plugin: &proxy.PluginSpec{Builtin: "watched"}, Registry: &registry.Config{MaxIdentities: 1}}
	_, conn := startWith(t, testConfig(ns), b.option())
	rc := registryv1.NewRegistryClient(conn)
	ctx, cancel := nsCtx("devices")
	defer cancel()
	if _, err := rc.Register(ctx, &registryv1.RegisterRequest{Identity: "sensor-1", Ttl: durationpb.New(time.Minute)}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	_, err := rc.Register(ctx, &registryv1.RegisterRequest{Identity: "sensor-2", Ttl: durationpb.New(time.Minute)})
	wantCode(t, "Register beyond the quota", err, codes.ResourceExhausted)
	resp, err := rc.Enumerate(ctx, &registryv1.EnumerateRequest{})
	if err != nil || len(resp.GetIdentities()) != 1 || resp.GetIdentities()[0].GetIdentity() != "sensor-1" {
		t.Fatalf("Enumerate: %v, %v", resp, err)
	}
	if _, err := rc.Multicast(ctx, &registryv1.MulticastRequest{}); err != nil {
		t.Fatalf("Multicast: %v", err)
	}
}

// TestServeBuiltinNamesTheKnownOnes: prism-proxy --serve-builtin with a
// name that is not linked exits 2 naming the linked drivers; run by hand
// (no host's magic value) it says how to run it and exits 1.
func TestServeBuiltinNamesTheKnownOnes(t *testing.T) {
	var b builtinProbe
	var out strings.Builder
	if code := proxy.Main([]string{"--serve-builtin", "nope"}, &out, b.option()); code != 2 || !strings.Contains(out.String(), "known: watched") {
		t.Errorf("--serve-builtin nope: exit %d, %q; want 2 naming watched", code, out.String())
	}
	out.Reset()
	if code := proxy.Main([]string{"--serve-builtin", "watched"}, &out, b.option()); code != 1 || !strings.Contains(out.String(), "prism-accept --via builtin --builtin watched") {
		t.Errorf("--serve-builtin watched by hand: exit %d, %q; want 1 and how to run it", code, out.String())
	}
}

// TestBuiltinStreams subscribes through the proxy to a builtin, publishes
// and receives, and ends the subscription with Shutdown (Unavailable at
// once, as for a process): frames cross the in-process channel both ways.
func TestBuiltinStreams(t *testing.T) {
	var b builtinProbe
	cfg := testConfig(proxy.Namespace{Name: "ps", Pattern: proxy.PubSub, Plugin: &proxy.PluginSpec{Builtin: "watched"}})
	cfg.DrainTimeout = time.Minute
	p, conn := startWith(t, cfg, b.option())
	shutdownWithSubscription(t, p, openSubscription(t, conn, "ps", 3))
	if n := b.closed.Load(); n != 1 {
		t.Errorf("driver Close calls after Shutdown: got %d, want 1", n)
	}
}
