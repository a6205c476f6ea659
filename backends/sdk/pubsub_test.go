package sdk_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

func servePubSub(t *testing.T, d sdk.Driver) (lifecyclev1.LifecycleClient, pubsubv1.PubSubClient) {
	t.Helper()
	conn := serveConn(t, d)
	return lifecyclev1.NewLifecycleClient(conn), pubsubv1.NewPubSubClient(conn)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// open subscribes and returns the stream after its first event.
func open(t *testing.T, ps pubsubv1.PubSubClient, sub *pubsubv1.Subscription) (pubsubv1.PubSub_SubscribeClient, error) {
	t.Helper()
	stream, err := ps.Subscribe(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	// io.EOF from Send means the server already ended the stream (a plugin
	// that is not started refuses at once); its status comes from Recv.
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{Subscription: sub}}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if ev.GetSubscribed() == nil {
		t.Fatalf("first event = %v, want Subscribed", ev)
	}
	return stream, nil
}

func TestSubscribeLifecycle(t *testing.T) {
	lc, ps := servePubSub(t, memstore.New())
	ctx := ctxT(t)
	if _, err := open(t, ps, &pubsubv1.Subscription{Topic: "t"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Subscribe before Start = %v, want FailedPrecondition", err)
	}
	start(t, lc)
	d, err := lc.Describe(ctx, &lifecyclev1.DescribeRequest{})
	if err != nil || d.GetSlowConsumer().GetMode() != lifecyclev1.SlowConsumerPolicy_MODE_BLOCK_PUBLISHER || d.GetSlowConsumer().GetBlockTimeout() == nil {
		t.Fatalf("Describe slow_consumer = %v, %v; want memstore's block-publisher policy", d.GetSlowConsumer(), err)
	}

	stream, err := open(t, ps, &pubsubv1.Subscription{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ps.Publish(ctx, &pubsubv1.PublishRequest{Topic: "t", Payload: []byte("hi"), Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil || ev.GetMessage().GetId() != resp.GetId() || string(ev.GetMessage().GetPayload()) != "hi" || ev.GetMessage().GetMetadata()["k"] != "v" {
		t.Fatalf("Recv = %v, %v; want the message published", ev, err)
	}
	// A half-close changes nothing.
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Publish(ctx, &pubsubv1.PublishRequest{Topic: "t", Payload: []byte("still")}); err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || string(ev.GetMessage().GetPayload()) != "still" {
		t.Fatalf("after CloseSend Recv = %v, %v; want the next message", ev, err)
	}

	// Unsubscribe: Unsubscribed, then a clean end.
	stream, err = open(t, ps, &pubsubv1.Subscription{Topic: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Unsubscribe{Unsubscribe: &pubsubv1.Unsubscribe{}}}); err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetUnsubscribed() == nil {
		t.Fatalf("after unsubscribe Recv = %v, %v; want Unsubscribed", ev, err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after Unsubscribed Recv = %v, want EOF", err)
	}

	// Drain ends open subscriptions with Unavailable.
	stream, err = open(t, ps, &pubsubv1.Subscription{Topic: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := lc.Drain(ctx, &lifecyclev1.DrainRequest{Deadline: durationpb.New(5 * time.Second)}); err != nil || r.GetInFlight() != 0 {
		t.Fatalf("Drain = %v, %v; want no call left in flight", r, err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("Recv after Drain = %v, want Unavailable", err)
	}
}

func TestSubscribeRejectsBadRequests(t *testing.T) {
	store := memstore.New()
	lc, ps := servePubSub(t, store)
	start(t, lc)
	for _, tc := range []struct {
		sub   *pubsubv1.Subscription
		code  codes.Code
		field string
	}{
		{&pubsubv1.Subscription{Topic: ""}, codes.InvalidArgument, "topic"},
		{&pubsubv1.Subscription{Topic: "t", Durable: "d"}, codes.Unimplemented, "pubsub.durable"},
		{&pubsubv1.Subscription{Topic: "t", AckWait: durationpb.New(time.Second)}, codes.InvalidArgument, "ack_wait"},
		{&pubsubv1.Subscription{Topic: "t", QueueGroup: "g", Durable: "d"}, codes.InvalidArgument, "queue_group"},
		{&pubsubv1.Subscription{Topic: "t", QueueGroup: "bad group"}, codes.InvalidArgument, "queue_group"},
	} {
		_, err := open(t, ps, tc.sub)
		wantCode(t, err, tc.code, tc.field)
	}
	_, err := ps.Ack(ctxT(t), &pubsubv1.AckRequest{Topic: "t", Durable: "d", AckTokens: []string{"x"}})
	wantCode(t, err, codes.Unimplemented, "pubsub.durable")

	// A second subscription on one stream is refused.
	stream, err := open(t, ps, &pubsubv1.Subscription{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{Subscription: &pubsubv1.Subscription{Topic: "t2"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantCode(t, err, codes.InvalidArgument, "subscription")
}

func TestQueueGroupSharesMessages(t *testing.T) {
	lc, ps := servePubSub(t, memstore.New())
	start(t, lc)
	ctx := ctxT(t)
	var members []pubsubv1.PubSub_SubscribeClient
	for range 3 {
		s, err := open(t, ps, &pubsubv1.Subscription{Topic: "q", QueueGroup: "g"})
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, s)
	}
	for range 9 {
		if _, err := ps.Publish(ctx, &pubsubv1.PublishRequest{Topic: "q"}); err != nil {
			t.Fatal(err)
		}
	}
	// Round robin: three each.
	for i, m := range members {
		for range 3 {
			if ev, err := m.Recv(); err != nil || ev.GetMessage() == nil {
				t.Fatalf("member %d: Recv = %v, %v", i, ev, err)
			}
		}
	}
}
