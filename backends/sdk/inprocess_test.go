package sdk_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/detail"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

// frame is an [sdk.Encoded] message, as a proxy that forwards bytes holds it.
type frame struct{ data mem.BufferSlice }

func (f *frame) TakeEncoded() mem.BufferSlice { d := f.data; f.data = nil; return d }
func (f *frame) SetEncoded(d mem.BufferSlice) { f.data = d }

func encoded(t *testing.T, m proto.Message) *frame {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return &frame{data: mem.BufferSlice{mem.SliceBuffer(b)}}
}

// TestInProcessEncodedFrames serves memstore in process and calls it with
// encoded frames, as the proxy does: Set and Get round-trip, the request
// id comes back in the trailer, and the SDK's lifecycle gate, decode rule
// and health are those of a process.
func TestInProcessEncodedFrames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := sdk.NewServer(memstore.New()).InProcess()
	lc := lifecyclev1.NewLifecycleClient(conn)

	// Before Start a data call is FailedPrecondition, as over a socket.
	err := conn.Invoke(ctx, "/prism.keyvalue.v1.KeyValue/Get", encoded(t, &keyvaluev1.GetRequest{Key: "k"}), &frame{})
	if got := status.Code(err); got != codes.FailedPrecondition {
		t.Fatalf("Get before Start: got %v (%v), want FailedPrecondition", got, err)
	}
	hc := healthpb.NewHealthClient(conn)
	if r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "prism.keyvalue.v1.KeyValue"}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health of KeyValue before Start: got %v, %v; want NOT_SERVING", r.GetStatus(), err)
	}
	start(t, lc)
	if r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "prism.keyvalue.v1.KeyValue"}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of KeyValue after Start: got %v, %v; want SERVING", r.GetStatus(), err)
	}

	if err := conn.Invoke(ctx, "/prism.keyvalue.v1.KeyValue/Set", encoded(t, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}), &frame{}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	resp := &frame{}
	var trl metadata.MD
	octx := metadata.AppendToOutgoingContext(ctx, "x-request-id", "rid-7")
	if err := conn.Invoke(octx, "/prism.keyvalue.v1.KeyValue/Get", encoded(t, &keyvaluev1.GetRequest{Key: "k"}), resp, grpc.Trailer(&trl)); err != nil {
		t.Fatalf("Get: %v", err)
	}
	var got keyvaluev1.GetResponse
	if err := proto.Unmarshal(resp.data.Materialize(), &got); err != nil {
		t.Fatalf("decode Get response frame: %v", err)
	}
	if string(got.GetValue()) != "v" {
		t.Fatalf("Get: got %q, want %q", got.GetValue(), "v")
	}
	if id := trl.Get("x-request-id"); len(id) != 1 || id[0] != "rid-7" {
		t.Fatalf("trailer x-request-id: got %q, want [rid-7]", id)
	}

	// A key that is not UTF-8 is InvalidArgument, never Internal.
	err = conn.Invoke(ctx, "/prism.keyvalue.v1.KeyValue/Get", &frame{data: mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x01, 0xff})}}, &frame{})
	if got := status.Code(err); got != codes.InvalidArgument {
		t.Fatalf("Get with a key that is not UTF-8: got %v (%v), want InvalidArgument", got, err)
	}
	if !strings.Contains(status.Convert(err).Message(), "field key") {
		t.Fatalf("Get with a key that is not UTF-8: %q does not name the field key", status.Convert(err).Message())
	}

	// authorization metadata is counted, as over a socket.
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer x")
	_, _ = keyvaluev1.NewKeyValueClient(conn).Get(actx, &keyvaluev1.GetRequest{Key: "k"})
	h, err := lc.HealthCheck(ctx, &lifecyclev1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if h.GetDetails()[detail.AuthorizationHeadersSeen] != "1" {
		t.Fatalf("%s: got %q, want 1", detail.AuthorizationHeadersSeen, h.GetDetails()[detail.AuthorizationHeadersSeen])
	}

	if _, err := lc.Stop(ctx, &lifecyclev1.StopRequest{}); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	_, err = keyvaluev1.NewKeyValueClient(conn).Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
	if got := status.Code(err); got != codes.Unavailable {
		t.Fatalf("Get after Stop: got %v (%v), want Unavailable", got, err)
	}
}

// TestInProcessStream subscribes and publishes through the in-process
// channel with typed messages on one side and encoded frames on the other.
func TestInProcessStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := sdk.NewServer(memstore.New()).InProcess()
	start(t, lifecyclev1.NewLifecycleClient(conn))
	stream, err := pubsubv1.NewPubSubClient(conn).Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{Subscription: &pubsubv1.Subscription{Topic: "t"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // the subscribed event
		t.Fatalf("first event: %v", err)
	}
	if err := conn.Invoke(ctx, "/prism.pubsub.v1.PubSub/Publish", encoded(t, &pubsubv1.PublishRequest{Topic: "t", Payload: []byte("p")}), &frame{}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if string(ev.GetMessage().GetPayload()) != "p" {
		t.Fatalf("got %v, want the message with payload p", ev)
	}
}
