package sdk_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/memstore"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// raw is a request as bytes on the wire.
type raw struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*raw).b)}, nil
}
func (rawCodec) Unmarshal(d mem.BufferSlice, v any) error { v.(*raw).b = d.Materialize(); return nil }
func (rawCodec) Name() string                             { return "proto" }

// TestNotUTF8IsInvalidArgument sends a KeyValue Get whose key is the byte
// 0xff, which does not decode: the SDK answers InvalidArgument, not gRPC's
// Internal.
func TestNotUTF8IsInvalidArgument(t *testing.T) {
	conn := serveConn(t, memstore.New())
	start(t, lifecyclev1.NewLifecycleClient(conn))
	ctx := context.Background()
	err := conn.Invoke(ctx, "/prism.keyvalue.v1.KeyValue/Get", &raw{[]byte{0x0a, 0x01, 0xff}}, &raw{}, grpc.ForceCodecV2(rawCodec{}))
	if got := status.Code(err); got != codes.InvalidArgument {
		t.Fatalf("Get with a key that is not UTF-8: got %v (%v), want InvalidArgument", got, err)
	}
}

// TestRequestIDEchoedInTrailer checks that the SDK echoes x-request-id in
// the response trailer.
func TestRequestIDEchoedInTrailer(t *testing.T) {
	lc, kv := serve(t, memstore.New())
	start(t, lc)
	ctx := context.Background()
	var trl metadata.MD
	_, err := kv.Get(metadata.AppendToOutgoingContext(ctx, "x-request-id", "rid-1"), &keyvaluev1.GetRequest{Key: "k"}, grpc.Trailer(&trl))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Get: %v", err)
	}
	if got := trl.Get("x-request-id"); len(got) != 1 || got[0] != "rid-1" {
		t.Fatalf("trailer x-request-id: got %q, want [rid-1]", got)
	}
}

// TestNotUTF8SubscriptionIsInvalidArgument opens a Subscribe whose
// subscription's topic is the byte 0xff: the stream ends InvalidArgument.
func TestNotUTF8SubscriptionIsInvalidArgument(t *testing.T) {
	conn := serveConn(t, memstore.New())
	start(t, lifecyclev1.NewLifecycleClient(conn))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		"/prism.pubsub.v1.PubSub/Subscribe", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	// SubscribeRequest.subscription (field 1) holding Subscription.topic (field 1) = 0xff.
	if err := cs.SendMsg(&raw{[]byte{0x0a, 0x03, 0x0a, 0x01, 0xff}}); err != nil {
		t.Fatal(err)
	}
	err = cs.RecvMsg(&raw{})
	if got := status.Code(err); got != codes.InvalidArgument {
		t.Fatalf("Subscribe to a topic that is not UTF-8: got %v (%v), want InvalidArgument", got, err)
	}
}
