package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

// shape is the data service a group of proxy specs calls: the routing,
// isolation and fault specs run once per service the plugin declares the
// basics of, so a PubSub-only plugin is certified through the proxy too.
type shape struct {
	// name is the service's short name, used in spec and context texts.
	name string
	// cap is the capability the specs of the shape are gated by.
	cap capability.Name
	// service is the full gRPC service name.
	service string
	// pattern is the proxy pattern that serves the service.
	pattern string
	// call makes one unary call that a serving namespace answers: a
	// KeyValue Get of a key never set (NotFound counts as answered) or a
	// PubSub Publish to a topic without subscribers.
	call func(ctx context.Context, t target.Target, prefix string, opts ...grpc.CallOption) error
	// method is a unary method of the service whose request's first field
	// is a string (the key, the topic).
	method string
}

// answered reports whether err is how a serving namespace answers call.
func (s shape) answered(err error) bool {
	return err == nil || (s.cap == capability.KeyValueBasic && status.Code(err) == codes.NotFound)
}

var (
	keyValueShape = shape{
		name: "KeyValue", cap: capability.KeyValueBasic, service: "prism.keyvalue.v1.KeyValue", pattern: "keyvalue",
		call: func(ctx context.Context, t target.Target, prefix string, opts ...grpc.CallOption) error {
			_, err := t.KeyValue().Get(ctx, &keyvaluev1.GetRequest{Key: prefix + "never-set"}, opts...)
			return err
		},
		method: "/prism.keyvalue.v1.KeyValue/Get",
	}
	pubSubShape = shape{
		name: "PubSub", cap: capability.PubSubBasic, service: "prism.pubsub.v1.PubSub", pattern: "pubsub",
		call: func(ctx context.Context, t target.Target, prefix string, opts ...grpc.CallOption) error {
			_, err := t.PubSub().Publish(ctx, &pubsubv1.PublishRequest{Topic: prefix + "probe", Payload: []byte("p")}, opts...)
			return err
		},
		method: "/prism.pubsub.v1.PubSub/Publish",
	}
	shapes = []shape{keyValueShape, pubSubShape}
)

// notUTF8Request is a message whose field 1 (a string in GetRequest and
// PublishRequest) holds the single byte 0xff: not UTF-8.
var notUTF8Request = []byte{0x0a, 0x01, 0xff}

// rawMessage is a message as bytes on the wire, for requests a Go client
// would refuse to marshal.
type rawMessage struct{ b []byte }

// rawCodec sends and receives [rawMessage] bytes as they are. It is named
// "proto" so the content type on the wire is application/grpc+proto.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMessage)
	if !ok {
		return nil, fmt.Errorf("marshal %T: not a raw message", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("unmarshal %T: not a raw message", v)
	}
	m.b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// otherShape returns the shape of the service a namespace with patterns
// does not serve, and whether there is one.
func otherShape(patterns []string) (shape, bool) {
	for _, s := range shapes {
		if !slices.Contains(patterns, s.pattern) {
			return s, true
		}
	}
	return shape{}, false
}

// namespacePatterns reads the patterns ns serves from the proxy's /status.
func namespacePatterns(ctx context.Context, px *hproxy.Proxy, ns string) ([]string, error) {
	st, err := px.Status(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range st.Namespaces {
		if n.Name == ns {
			var ps []string
			for _, p := range n.Patterns {
				ps = append(ps, string(p))
			}
			return ps, nil
		}
	}
	return nil, fmt.Errorf("read patterns of %q: the proxy's /status has no such namespace", ns)
}

// subscription is an open Subscribe stream whose messages a goroutine
// passes on.
type subscription struct {
	cancel context.CancelFunc
	// messages receives every message, then closes when the stream ends.
	messages chan *pubsubv1.Message
	// err holds how the stream ended, once messages is closed.
	err     error
	trailer metadata.MD
}

// subscribe opens a Subscribe stream on t (a queue group member when group
// is set), waits for Subscribed within the call timeout, and passes the
// messages on; the spec's cleanup cancels it.
func subscribe(t target.Target, call time.Duration, topic, group string) *subscription {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(context.Background())
	DeferCleanup(cancel)
	s := &subscription{cancel: cancel, messages: make(chan *pubsubv1.Message, 1024)}
	stream, err := t.PubSub().Subscribe(ctx)
	Expect(err).NotTo(HaveOccurred(), "open Subscribe to %q", topic)
	Expect(stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
		Subscription: &pubsubv1.Subscription{Topic: topic, QueueGroup: group}}})).To(Succeed(), "send the subscription to %q", topic)
	first := make(chan error, 1)
	go func() {
		ev, err := stream.Recv()
		if err == nil && ev.GetSubscribed() == nil {
			err = fmt.Errorf("got %v as the first event, want Subscribed", ev)
		}
		first <- err
	}()
	select {
	case err := <-first:
		Expect(err).NotTo(HaveOccurred(), "the first event of a subscription to %q", topic)
	case <-time.After(call):
		Fail(fmt.Sprintf("no Subscribed event within %v of subscribing to %q", call, topic))
	}
	go func() {
		defer close(s.messages)
		for {
			ev, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.err = err
				}
				s.trailer = stream.Trailer()
				return
			}
			if m := ev.GetMessage(); m != nil {
				s.messages <- m
			}
		}
	}()
	return s
}

// wrongPatternCall makes a call of the service ns's patterns do not
// include and returns it, with the service's name.
func wrongPatternCall(ctx context.Context, t target.Target, patterns []string) (string, error) {
	s, ok := otherShape(patterns)
	if !ok {
		return "", errors.New("the namespace serves every data service")
	}
	// The message body does not matter: routing answers before the plugin.
	return s.service, t.Conn.Invoke(t.Context(ctx), s.method, &emptypb.Empty{}, &emptypb.Empty{})
}
