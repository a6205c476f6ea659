package proxy_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	memstorepkg "github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/reference/proxy"
)

// sickArg makes this test binary serve as a memstore plugin that reports
// UNHEALTHY while the file named by the argument after it exists.
const sickArg = "prism-test-sick-plugin"

// sick is memstore whose health follows a file.
type sick struct {
	*memstorepkg.Store
	file string
}

func (s sick) Health(ctx context.Context) sdk.Health {
	if _, err := os.Stat(s.file); err == nil {
		return sdk.Health{Status: sdk.Unhealthy, Message: "the test says so"}
	}
	return s.Store.Health(ctx)
}

// serveSick serves sick when the test binary runs as that plugin.
func serveSick(args []string) (int, bool) {
	for i, a := range args {
		if a == sickArg && i+1 < len(args) {
			return sdk.Serve(sick{Store: memstorepkg.New(), file: args[i+1]}), true
		}
	}
	return 0, false
}

// TestNamespaceHealthFollowsPluginHealth: a namespace is NOT_SERVING in
// gRPC health while its plugin answers HealthCheck with UNHEALTHY, and
// SERVING again once it answers HEALTHY.
func TestNamespaceHealthFollowsPluginHealth(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	flag := filepath.Join(t.TempDir(), "unhealthy")
	ns := proxy.Namespace{Name: "sick", Pattern: proxy.KeyValue, Plugin: &proxy.PluginSpec{Binary: self, Args: []string{sickArg, flag}}}
	_, conn := start(t, testConfig(ns))
	hc := healthpb.NewHealthClient(conn)
	wait := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		waitHealth(t, hc, "sick", want)
	}
	wait(healthpb.HealthCheckResponse_SERVING)
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wait(healthpb.HealthCheckResponse_NOT_SERVING)
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	wait(healthpb.HealthCheckResponse_SERVING)
}

// TestShutdownEndsOpenSubscriptions: Shutdown ends an open Subscribe at
// once with Unavailable instead of waiting for the drain deadline.
func TestShutdownEndsOpenSubscriptions(t *testing.T) {
	cfg := testConfig(proxy.Namespace{Name: "ps", Pattern: proxy.PubSub, Plugin: &proxy.PluginSpec{Binary: memstore}})
	cfg.DrainTimeout = time.Minute
	p, conn := start(t, cfg)
	began := time.Now()
	shutdownWithSubscription(t, p, openSubscription(t, conn, "ps", 0))
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("Shutdown with a subscription open took %v; the drain deadline is a minute", d)
	}
}

// openSubscription subscribes to topic "t" of namespace ns, waits for
// Subscribed, then publishes n messages and receives each in order. The
// subscription lives as long as the test.
func openSubscription(t *testing.T, conn grpc.ClientConnInterface, ns string, n int) pubsubv1.PubSub_SubscribeClient {
	t.Helper()
	ctx, cancel := nsCtx(ns)
	t.Cleanup(cancel)
	ps := pubsubv1.NewPubSubClient(conn)
	sub, err := ps.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
		Subscription: &pubsubv1.Subscription{Topic: "t"}}}); err != nil {
		t.Fatal(err)
	}
	if ev, err := sub.Recv(); err != nil || ev.GetSubscribed() == nil {
		t.Fatalf("first event: %v, %v; want Subscribed", ev, err)
	}
	for i := range n {
		if _, err := ps.Publish(ctx, &pubsubv1.PublishRequest{Topic: "t", Payload: []byte{byte('a' + i)}}); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	for i := range n {
		ev, err := sub.Recv()
		if err != nil || string(ev.GetMessage().GetPayload()) != string([]byte{byte('a' + i)}) {
			t.Fatalf("message %d: %v, %v", i, ev, err)
		}
	}
	return sub
}

// shutdownWithSubscription shuts p down (drain deadline a minute) while sub
// is open and checks that sub ends with Unavailable before Shutdown returns.
func shutdownWithSubscription(t *testing.T, p *proxy.Proxy, sub pubsubv1.PubSub_SubscribeClient) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		_ = p.Shutdown(sctx)
	}()
	_, err := sub.Recv()
	wantCode(t, "Recv on a subscription open at Shutdown", err, codes.Unavailable)
	<-done
}

// waitHealth polls the proxy's gRPC health of service until it is want, for
// at most 10 s.
func waitHealth(t *testing.T, hc healthpb.HealthClient, service string, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		cancel()
		if err == nil && r.GetStatus() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health of %q: got %v (%v), want %v", service, r.GetStatus(), err, want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
