// Package target is what a suite talks to: a gRPC connection plus a Prism
// namespace. The same spec code runs against a plugin directly or through the
// proxy, because the namespace travels in request metadata
// (x-prism-namespace) and both serve the same services.
package target

import (
	"context"
	"github.com/prism-suite/prism/proto/handshake"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// NamespaceKey is the request metadata key that names the namespace.
const NamespaceKey = "x-prism-namespace"

// Via says how a target reaches the plugin.
type Via string

// The ways a suite reaches a plugin.
const (
	Direct Via = "direct"
	Proxy  Via = "proxy"
)

// Target is a connection and a namespace.
type Target struct {
	Via       Via
	Namespace string
	Conn      *grpc.ClientConn
}

// KeyValue returns a KeyValue client whose calls carry the namespace.
func (t Target) KeyValue() keyvaluev1.KeyValueClient { return keyvaluev1.NewKeyValueClient(t.conn()) }

// PubSub returns a PubSub client whose calls carry the namespace.
func (t Target) PubSub() pubsubv1.PubSubClient { return pubsubv1.NewPubSubClient(t.conn()) }

// Registry returns a Multicast Registry client whose calls carry the
// namespace (the proxy serves it for namespaces with pattern registry).
func (t Target) Registry() registryv1.RegistryClient { return registryv1.NewRegistryClient(t.conn()) }

// Context returns ctx with the namespace in outgoing metadata.
func (t Target) Context(ctx context.Context) context.Context {
	if t.Namespace == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, NamespaceKey, t.Namespace)
}

// conn wraps Conn so every call carries the namespace.
func (t Target) conn() grpc.ClientConnInterface { return nsConn{t} }

type nsConn struct{ t Target }

func (c nsConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.t.Conn.Invoke(c.t.Context(ctx), method, args, reply, opts...)
}

func (c nsConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.t.Conn.NewStream(c.t.Context(ctx), desc, method, opts...)
}

// Dial opens a plaintext connection to addr ("unix:///path" or "host:port"),
// traced when [SetTracing] says so.
func Dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(handshake.MaxMessageBytes), grpc.MaxCallSendMsgSize(handshake.MaxMessageBytes))}, DialOptions()...)...)
}
