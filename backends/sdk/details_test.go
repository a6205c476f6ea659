package sdk_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/detail"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

// details returns the standard details of a HealthCheck, failing the test
// when one is missing or not a decimal count.
func details(t *testing.T, lc lifecyclev1.LifecycleClient) map[string]int64 {
	t.Helper()
	h, err := lc.HealthCheck(context.Background(), &lifecyclev1.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("HealthCheck: %v", err)
	}
	out := map[string]int64{}
	for _, k := range detail.Standard() {
		n, ok, err := detail.Get(h.GetDetails(), k)
		if !ok || err != nil {
			t.Fatalf("HealthCheck details %v: %s missing or bad (%v)", h.GetDetails(), k, err)
		}
		out[k] = n
	}
	return out
}

func TestStandardDetailsInEveryState(t *testing.T) {
	lc, _ := serve(t, memstore.New())
	details(t, lc) // new
	start(t, lc)
	details(t, lc) // started
	if _, err := lc.Stop(context.Background(), &lifecyclev1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	details(t, lc) // stopped
}

func TestAuthorizationTripwire(t *testing.T) {
	lc, kv := serve(t, memstore.New())
	ctx := context.Background()
	tctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer leaked")
	// Refused at admission (not started): counted all the same.
	if _, err := kv.Get(tctx, &keyvaluev1.GetRequest{Key: "k"}); err == nil {
		t.Fatal("Get before Start succeeded")
	}
	// A lifecycle call with the header is not a data call: not counted.
	if _, err := lc.Describe(tctx, &lifecyclev1.DescribeRequest{}); err != nil {
		t.Fatal(err)
	}
	start(t, lc)
	if got := details(t, lc)[detail.AuthorizationHeadersSeen]; got != 1 {
		t.Errorf("%s = %d after one refused data call with the header and one lifecycle call, want 1", detail.AuthorizationHeadersSeen, got)
	}
	var trailer metadata.MD
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}, grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	if len(trailer.Get(sdk.AuthorizationSeenKey)) != 0 {
		t.Errorf("a call without authorization got the %s trailer", sdk.AuthorizationSeenKey)
	}
	if got := details(t, lc)[detail.AuthorizationHeadersSeen]; got != 1 {
		t.Errorf("%s = %d after a call without the header, want it unchanged at 1", detail.AuthorizationHeadersSeen, got)
	}
	if _, err := kv.Get(tctx, &keyvaluev1.GetRequest{Key: "k"}, grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	if got := trailer.Get(sdk.AuthorizationSeenKey); len(got) != 1 {
		t.Errorf("a call with authorization: trailer %s = %v, want it set", sdk.AuthorizationSeenKey, got)
	}
	if got := details(t, lc)[detail.AuthorizationHeadersSeen]; got != 2 {
		t.Errorf("%s = %d, want 2", detail.AuthorizationHeadersSeen, got)
	}
}

// blocking is memstore whose Get of "block" waits until release is closed,
// ignoring its context (a driver stuck on a hung backend).
type blocking struct {
	*memstore.Store
	entered chan struct{}
	release chan struct{}
}

func (b *blocking) Get(ctx context.Context, key string) ([]byte, error) {
	if key == "block" {
		b.entered <- struct{}{}
		<-b.release
	}
	return b.Store.Get(ctx, key)
}

func TestInflightCallsAndOpenStreams(t *testing.T) {
	d := &blocking{Store: memstore.New(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	conn := serveConn(t, d)
	lc, kv, ps := lifecyclev1.NewLifecycleClient(conn), keyvaluev1.NewKeyValueClient(conn), pubsubv1.NewPubSubClient(conn)
	start(t, lc)
	if got := details(t, lc); got[detail.InflightCalls] != 0 || got[detail.OpenStreams] != 0 {
		t.Fatalf("idle plugin reports %v, want no call in flight", got)
	}

	// A Get whose client gives up at once still counts while the driver
	// holds it.
	gctx, gcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer gcancel()
	done := make(chan error, 1)
	go func() { _, err := kv.Get(gctx, &keyvaluev1.GetRequest{Key: "block"}); done <- err }()
	<-d.entered
	if err := <-done; err == nil {
		t.Fatal("the blocked Get succeeded before its deadline")
	}
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	stream, err := ps.Subscribe(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
		Subscription: &pubsubv1.Subscription{Topic: "t"}}}); err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetSubscribed() == nil {
		t.Fatalf("first event %v, %v; want Subscribed", ev, err)
	}
	if got := details(t, lc); got[detail.InflightCalls] != 2 || got[detail.OpenStreams] != 1 {
		t.Errorf("with a held Get whose client gave up and an open Subscribe: %v, want 2 in flight, 1 open stream", got)
	}

	close(d.release)
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	// The Get ends once the driver lets go of it; the half-closed stream
	// stays open (a half-close changes nothing) until it is cancelled.
	waitDetails(t, lc, 1, 1)
	scancel()
	waitDetails(t, lc, 0, 0)
}

// waitDetails polls HealthCheck until it reports inflight calls in flight
// and streams open streams, failing after 5 s.
func waitDetails(t *testing.T, lc lifecyclev1.LifecycleClient, inflight, streams int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := details(t, lc)
		if got[detail.InflightCalls] == inflight && got[detail.OpenStreams] == streams {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("details %v, want %d in flight and %d open streams", got, inflight, streams)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
