// Package client is the Go client of Prism's data API, for the reference
// proxy (or a plugin directly): a connection, a namespace carried in every
// call's x-prism-namespace metadata, a default deadline, and retries.
//
//	c, err := client.New("127.0.0.1:7070", client.WithNamespace("orders"))
//	...
//	defer c.Close()
//	err = c.KeyValue().Set(ctx, "k", []byte("v"))
//	v, err := c.KeyValue().Get(ctx, "k") // client.IsNotFound(err) for a missing key
//
// # Tokens
//
// With auth on, the proxy needs a bearer token on every call:
// [WithTokenSource] sends the token of any oauth2.TokenSource, asked for
// each call. The token of prismctl login, refreshed with its refresh token
// before it expires and written back to its file, comes from
// reference/login:
//
//	path, _ := login.DefaultPath() // $PRISM_TOKEN_FILE or ~/.prism/token
//	ts, err := login.TokenSource(ctx, path, 0, nil)
//	...
//	c, err := client.New("127.0.0.1:7070", client.WithNamespace("orders"), client.WithTokenSource(ts))
//
// # Deadlines
//
// A call whose context has no deadline gets the client's timeout
// ([DefaultTimeout] unless [WithTimeout] says otherwise).
//
// # Traces
//
// With [WithTracing], each call is a span, and its trace continues through
// the proxy into the plugin and its backend.
//
// # Retries
//
// Calls that are idempotent — repeating them leaves the same state and
// returns the same answer — are retried when they fail with Unavailable (a
// plugin restarting behind the proxy, a proxy restarting), with exponential
// backoff, through gRPC's service-config retry policy: KeyValue Get, Exists,
// GetTTL, Scan, Count, BatchGet, Set and BatchSet, and Registry Enumerate.
// Delete, BatchDelete, Persist and Expire (their answers or TTLs change when
// repeated), every PubSub call (a repeated Publish is a duplicate message)
// and the other Registry calls (a repeated Multicast delivers twice) are
// never retried.
// [WithRetryPolicy] changes the attempts and backoff; [WithoutRetries] turns
// retries off.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/proto/tracing"
)

// Metadata keys.
const (
	// NamespaceKey carries the namespace of every call.
	NamespaceKey = "x-prism-namespace"
	// RequestIDKey carries a request id, when the caller sets one with
	// [WithRequestID]; the proxy makes one otherwise.
	RequestIDKey = "x-request-id"
)

// DefaultTimeout bounds a call whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// MaxMessageBytes is the largest message the client sends or accepts.
const MaxMessageBytes = 64 << 20

// RetryPolicy is the backoff of retries of idempotent calls that failed
// with Unavailable.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt too (2..5; gRPC caps it at 5).
	MaxAttempts int
	// InitialBackoff and MaxBackoff bound the randomized delay between attempts.
	InitialBackoff, MaxBackoff time.Duration
	// Multiplier grows the backoff after each attempt.
	Multiplier float64
}

// DefaultRetryPolicy is 4 attempts, backoff from 50 ms doubling to 1 s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 4, InitialBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2}
}

// idempotent lists the methods that are retried, by service.
var idempotent = map[string][]string{
	"prism.keyvalue.v1.KeyValue": {"Get", "Exists", "GetTTL", "Scan", "Count", "BatchGet", "Set", "BatchSet"},
	"prism.registry.v1.Registry": {"Enumerate"},
}

// ServiceConfig returns the gRPC service config that retries the idempotent
// methods on Unavailable with policy p.
func ServiceConfig(p RetryPolicy) string {
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method"`
	}
	var names []name
	for svc, methods := range idempotent {
		for _, m := range methods {
			names = append(names, name{svc, m})
		}
	}
	sec := func(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }
	cfg := map[string]any{"methodConfig": []any{map[string]any{
		"name": names,
		"retryPolicy": map[string]any{
			"maxAttempts": p.MaxAttempts, "initialBackoff": sec(p.InitialBackoff), "maxBackoff": sec(p.MaxBackoff),
			"backoffMultiplier": p.Multiplier, "retryableStatusCodes": []string{"UNAVAILABLE"},
		},
	}}}
	b, _ := json.Marshal(cfg)
	return string(b)
}

// Client is a connection and a namespace. It is safe for concurrent use.
type Client struct {
	conn      *grpc.ClientConn
	owned     bool
	namespace string
	timeout   time.Duration
}

type options struct {
	namespace string
	timeout   time.Duration
	retry     *RetryPolicy
	dial      []grpc.DialOption
}

// Option configures New.
type Option func(*options)

// WithNamespace sets the namespace of every call (default: none, which the
// proxy rejects; a plugin reached directly ignores it).
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithTimeout sets the deadline of calls whose context has none.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithRetryPolicy sets the retry backoff of idempotent calls.
func WithRetryPolicy(p RetryPolicy) Option { return func(o *options) { o.retry = &p } }

// WithoutRetries turns retries off.
func WithoutRetries() Option { return func(o *options) { o.retry = &RetryPolicy{} } }

// WithTracing makes every call a client span of t and carries the W3C
// trace context (traceparent) of the caller's span to the proxy, which
// continues the trace to the plugin (package proto/tracing; [tracing.Start]
// from the OTEL_* environment, or your own provider). A nil t — tracing off,
// the default — installs nothing.
func WithTracing(t *tracing.Tracing) Option {
	return func(o *options) { o.dial = append(o.dial, t.DialOptions()...) }
}

// WithDialOptions adds gRPC dial options (TLS credentials, interceptors).
func WithDialOptions(d ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, d...) }
}

// New returns a client of the proxy (or plugin) at addr: "host:port" or
// "unix:///path". The connection is plaintext unless WithDialOptions gives
// credentials. It connects lazily, on the first call.
func New(addr string, opts ...Option) (*Client, error) {
	o := options{timeout: DefaultTimeout}
	def := DefaultRetryPolicy()
	o.retry = &def
	for _, opt := range opts {
		opt(&o)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
	}
	if o.retry.MaxAttempts > 1 {
		dial = append(dial, grpc.WithDefaultServiceConfig(ServiceConfig(*o.retry)))
	} else {
		dial = append(dial, grpc.WithDisableRetry())
	}
	dial = append(dial, o.dial...)
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &Client{conn: conn, owned: true, namespace: o.namespace, timeout: o.timeout}, nil
}

// Namespace returns a client for another namespace on the same connection.
// Closing it does not close the connection.
func (c *Client) Namespace(ns string) *Client {
	return &Client{conn: c.conn, namespace: ns, timeout: c.timeout}
}

// Conn returns the underlying connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection, when this client opened it.
func (c *Client) Close() error {
	if !c.owned {
		return nil
	}
	return c.conn.Close()
}

// Health returns the serving status of service: a namespace on the proxy,
// or "" for the proxy itself.
func (c *Client) Health(ctx context.Context, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	resp, err := healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, fmt.Errorf("check health of %q: %w", service, err)
	}
	return resp.GetStatus(), nil
}

// callContext adds the namespace and, when ctx has no deadline, the timeout.
func (c *Client) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.namespace != "" {
		ctx = withNamespace(ctx, c.namespace)
	}
	if _, ok := ctx.Deadline(); !ok && c.timeout > 0 {
		return context.WithTimeout(ctx, c.timeout)
	}
	return ctx, func() {}
}

// WithRequestID returns ctx carrying id as the request id of the calls made
// with it; the proxy and plugin log it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, RequestIDKey, id)
}

// IsNotFound reports whether err is a NotFound status (a missing key).
func IsNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// Code returns the gRPC status code of err (codes.OK for nil).
func Code(err error) codes.Code {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code()
	}
	return status.Code(err)
}

func withNamespace(ctx context.Context, ns string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, NamespaceKey, ns)
}
