package proxy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/prism-suite/prism/reference/auth"
)

// Limits bound what clients can make the proxy hold. Each has a safe
// default ([DefaultLimits]); none can be turned off. In YAML they sit under
// limits:, and a limit left out keeps its default.
//
//	limits:
//	  max_receive_bytes: 4194304        # any request message; gRPC refuses a longer one before reading it
//	  service_receive_bytes:            # lower limits per service (checked on the message's bytes, before decoding)
//	    prism.keyvalue.v1.KeyValue: 2162688
//	    prism.pubsub.v1.PubSub: 2162688
//	    prism.registry.v1.Registry: 1114112
//	  max_concurrent_streams: 128       # HTTP/2 streams per client connection
//	  max_header_bytes: 131072          # a call's metadata (HTTP/2 header list), tokens included
//	  max_in_flight: 4096               # calls being served at once, across the proxy
//	  first_message_timeout: 10s        # a forwarded call whose first message has not arrived by then is cancelled
//	  keepalive_min_time: 5m            # a client pinging more often is sent GOAWAY (too_many_pings; gRPC's own default)
//	  idle_timeout: 5m                  # a connection with no call for this long is closed (GOAWAY)
//	  max_health_watchers: 64           # grpc.health.v1.Health/Watch streams at once
//
// Over a size limit a call gets ResourceExhausted naming the limit; over
// max_in_flight or max_health_watchers, ResourceExhausted at once (the
// client may retry later); a stream beyond max_concurrent_streams waits in
// the client for a free one (HTTP/2 flow). With auth on, Health/Watch needs
// a valid token (any grant) as well.
type Limits struct {
	// MaxReceiveBytes bounds every request message (gRPC's MaxRecvMsgSize).
	MaxReceiveBytes int `yaml:"max_receive_bytes"`
	// ServiceReceiveBytes bounds the request messages of one service (full
	// name), at most MaxReceiveBytes.
	ServiceReceiveBytes map[string]int `yaml:"service_receive_bytes"`
	// MaxConcurrentStreams bounds the HTTP/2 streams of one connection.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
	// MaxHeaderBytes bounds a call's metadata (the HTTP/2 header list); it
	// must leave room for auth's max_token_bytes.
	MaxHeaderBytes uint32 `yaml:"max_header_bytes"`
	// MaxInFlight bounds the calls the proxy serves at once.
	MaxInFlight int `yaml:"max_in_flight"`
	// FirstMessageTimeout bounds the wait for a forwarded call's first
	// request message, received in full (a half-open stream holds nothing
	// longer; a client on a slow link needs it above the time its largest
	// first message takes to send).
	FirstMessageTimeout time.Duration `yaml:"first_message_timeout"`
	// KeepaliveMinTime is the least interval between a client's pings.
	KeepaliveMinTime time.Duration `yaml:"keepalive_min_time"`
	// IdleTimeout closes a connection that has had no call for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHealthWatchers bounds the Health/Watch streams open at once.
	MaxHealthWatchers int `yaml:"max_health_watchers"`
}

// Defaults of [DefaultLimits].
const (
	DefaultMaxReceiveBytes      = 4 << 20
	DefaultMaxConcurrentStreams = 128
	DefaultMaxHeaderBytes       = 128 << 10
	DefaultMaxInFlight          = 4096
	DefaultFirstMessageTimeout  = 10 * time.Second
	DefaultKeepaliveMinTime     = 5 * time.Minute
	DefaultIdleTimeout          = 5 * time.Minute
	DefaultMaxHealthWatchers    = 64
)

// DefaultServiceReceiveBytes are the per-service defaults: a KeyValue
// value or a PubSub payload is at most 1 MiB (the SDK's default limit), so
// twice that plus room for the rest of the message; Registry requests carry
// identity metadata, a filter and at most one 1 MiB multicast payload.
func DefaultServiceReceiveBytes() map[string]int {
	return map[string]int{
		"prism.keyvalue.v1.KeyValue": 2<<20 + 64<<10,
		"prism.pubsub.v1.PubSub":     2<<20 + 64<<10,
		RegistryService:              1<<20 + 64<<10,
	}
}

// DefaultLimits returns every limit at its default.
func DefaultLimits() Limits {
	return Limits{MaxReceiveBytes: DefaultMaxReceiveBytes, ServiceReceiveBytes: DefaultServiceReceiveBytes(),
		MaxConcurrentStreams: DefaultMaxConcurrentStreams, MaxHeaderBytes: DefaultMaxHeaderBytes, MaxInFlight: DefaultMaxInFlight,
		FirstMessageTimeout: DefaultFirstMessageTimeout, KeepaliveMinTime: DefaultKeepaliveMinTime,
		IdleTimeout: DefaultIdleTimeout, MaxHealthWatchers: DefaultMaxHealthWatchers}
}

// validate adds a problem per bad limit, each naming its field.
func (l Limits) validate(add func(path, format string, a ...any)) {
	if l.MaxReceiveBytes <= 0 || l.MaxReceiveBytes > MaxMessageBytes {
		add("limits.max_receive_bytes", "must be between 1 and %d, got %d", MaxMessageBytes, l.MaxReceiveBytes)
	}
	for _, svc := range slices.Sorted(maps.Keys(l.ServiceReceiveBytes)) {
		if n := l.ServiceReceiveBytes[svc]; n <= 0 || n > l.MaxReceiveBytes {
			add("limits.service_receive_bytes["+svc+"]", "must be between 1 and max_receive_bytes %d, got %d", l.MaxReceiveBytes, n)
		}
	}
	if l.MaxConcurrentStreams == 0 {
		add("limits.max_concurrent_streams", "must be positive")
	}
	if l.MaxHeaderBytes < 8<<10 {
		add("limits.max_header_bytes", "must be at least 8192, got %d", l.MaxHeaderBytes)
	}
	if l.MaxInFlight <= 0 {
		add("limits.max_in_flight", "must be positive, got %d", l.MaxInFlight)
	}
	if l.FirstMessageTimeout <= 0 {
		add("limits.first_message_timeout", "must be positive, got %v", l.FirstMessageTimeout)
	}
	if l.KeepaliveMinTime <= 0 {
		add("limits.keepalive_min_time", "must be positive, got %v", l.KeepaliveMinTime)
	}
	if l.IdleTimeout <= 0 {
		add("limits.idle_timeout", "must be positive, got %v", l.IdleTimeout)
	}
	if l.MaxHealthWatchers <= 0 {
		add("limits.max_health_watchers", "must be positive, got %d", l.MaxHealthWatchers)
	}
}

// receiveLimit is the most bytes a request message of service may have.
func (l Limits) receiveLimit(service string) int {
	if n, ok := l.ServiceReceiveBytes[service]; ok {
		return n
	}
	return l.MaxReceiveBytes
}

// serverOptions are the gRPC server options that enforce the limits.
func (l Limits) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxReceiveBytes),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(l.MaxHeaderBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.IdleTimeout}),
	}
}

// tooLarge is the answer to a message over its service's limit.
func tooLarge(service string, n, limit int) error {
	return status.Errorf(codes.ResourceExhausted, "request message of %d bytes is over the %d allowed for %s (limits.service_receive_bytes)", n, limit, service)
}

// checkFrame refuses (and frees) a received frame over service's limit.
func (p *Proxy) checkFrame(f *frame, service string) error {
	if limit := p.cfg.Limits.receiveLimit(service); f.data.Len() > limit {
		n := f.data.Len()
		f.free()
		return tooLarge(service, n, limit)
	}
	return nil
}

// limitedService returns a copy of desc whose handlers receive each request
// as raw bytes first (the codec's frame), refuse it when it is over limit,
// and only then decode it: a message over the limit is never unmarshalled.
// A stream's first message must arrive within first.
func limitedService(desc *grpc.ServiceDesc, limit int, first time.Duration) *grpc.ServiceDesc {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i, m := range d.Methods {
		h := m.Handler
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, limitedDecoder(dec, desc.ServiceName, limit), in)
		}
	}
	d.Streams = slices.Clone(desc.Streams)
	for i, s := range d.Streams {
		h := s.Handler
		d.Streams[i].Handler = func(srv any, ss grpc.ServerStream) error {
			return h(srv, &limitedStream{ServerStream: ss, service: desc.ServiceName, limit: limit, first: first})
		}
	}
	return &d
}

func limitedDecoder(dec func(any) error, service string, limit int) func(any) error {
	return func(v any) error {
		f := &frame{}
		if err := dec(f); err != nil {
			return err
		}
		return decodeFrame(f, v, service, limit)
	}
}

func decodeFrame(f *frame, v any, service string, limit int) error {
	defer f.free()
	if n := f.data.Len(); n > limit {
		return tooLarge(service, n, limit)
	}
	m, ok := v.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "decode %T: not a proto message", v)
	}
	b := f.data.Materialize()
	if err := proto.Unmarshal(b, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "decode request: %v", err)
	}
	return nil
}

// limitedStream receives each message as raw bytes and decodes it only
// when it is within limit; the first must arrive within first.
type limitedStream struct {
	grpc.ServerStream
	service string
	limit   int
	first   time.Duration
	got     bool
}

func (s *limitedStream) RecvMsg(v any) error {
	f := &frame{}
	if s.got {
		if err := s.ServerStream.RecvMsg(f); err != nil {
			return err
		}
		return decodeFrame(f, v, s.service, s.limit)
	}
	s.got = true
	ch := make(chan error, 1)
	go func() { ch <- s.ServerStream.RecvMsg(f) }()
	t := time.NewTimer(s.first)
	defer t.Stop()
	select {
	case err := <-ch:
		if err != nil {
			return err
		}
		return decodeFrame(f, v, s.service, s.limit)
	case <-t.C:
		// The handler returns this, which ends the stream and the RecvMsg;
		// a message that makes it in just now is released.
		go func() {
			if err := <-ch; err == nil {
				f.free()
			}
		}()
		return status.Errorf(codes.DeadlineExceeded, "no request message within %v of the call's start (limits.first_message_timeout)", s.first)
	}
}

const healthWatch = "/grpc.health.v1.Health/Watch"

// healthWatchGate caps the Health/Watch streams open at once and, with auth
// on, asks them for a valid token: a Watch holds a stream and a goroutine
// for as long as the client likes.
type healthWatchGate struct {
	open  atomic.Int64
	max   int64
	authz *auth.Authorizer // nil: auth off
}

func (g *healthWatchGate) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod != healthWatch {
		return h(srv, ss)
	}
	if g.authz != nil {
		md, _ := metadata.FromIncomingContext(ss.Context())
		v := md.Get(auth.AuthorizationKey)
		tok, ok := "", len(v) == 1
		if ok {
			var scheme string
			scheme, tok, ok = strings.Cut(v[0], " ")
			ok = ok && strings.EqualFold(scheme, "bearer")
		}
		if !ok {
			return status.Error(codes.Unauthenticated, "invalid or missing credentials")
		}
		if _, err := g.authz.Verify(ss.Context(), strings.TrimSpace(tok)); err != nil {
			return err
		}
	}
	if g.open.Add(1) > g.max {
		g.open.Add(-1)
		return status.Errorf(codes.ResourceExhausted, "%d health watchers are open, the most allowed (limits.max_health_watchers); use Health/Check", g.max)
	}
	defer g.open.Add(-1)
	return h(srv, ss)
}

// overloaded answers a call over max_in_flight.
func (p *Proxy) overloaded() error {
	return status.Error(codes.ResourceExhausted, fmt.Sprintf("the proxy is serving %d calls, the most allowed (limits.max_in_flight); retry later", p.cfg.Limits.MaxInFlight))
}
