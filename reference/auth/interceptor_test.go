package auth_test

import (
	"time"

	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/reference/auth"
)

// seen is what a handler saw of a call.
type seen struct {
	mu    sync.Mutex
	calls int
	md    metadata.MD
	sub   string
}

func (s *seen) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	p, _ := auth.PrincipalFromContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.md = md.Copy()
	s.sub = ""
	if p != nil {
		s.sub = p.Subject
	}
}

func (s *seen) get() (int, metadata.MD, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.md, s.sub
}

// kvServer is a registered KeyValue service: calls go through the unary
// interceptor.
type kvServer struct {
	keyvaluev1.UnimplementedKeyValueServer
	s *seen
}

func (k *kvServer) Get(ctx context.Context, _ *keyvaluev1.GetRequest) (*keyvaluev1.GetResponse, error) {
	k.s.record(ctx)
	return &keyvaluev1.GetResponse{Value: []byte("v")}, nil
}

func (k *kvServer) Set(ctx context.Context, _ *keyvaluev1.SetRequest) (*keyvaluev1.SetResponse, error) {
	k.s.record(ctx)
	return &keyvaluev1.SetResponse{}, nil
}

// serve starts a gRPC server on 127.0.0.1 with the interceptor. With
// forward, every call goes to an unknown-service handler, as in the proxy
// (streaming interceptor path); otherwise KeyValue is registered (unary).
func serve(t *testing.T, e *env, forward bool, opts ...auth.InterceptorOption) (*grpc.ClientConn, *seen) {
	t.Helper()
	s := &seen{}
	sopts := auth.NewInterceptor(e.a, opts...).ServerOptions()
	if forward {
		sopts = append(sopts, grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
			s.record(ss.Context())
			if err := ss.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			return ss.SendMsg(&emptypb.Empty{})
		}))
	}
	srv := grpc.NewServer(sopts...)
	if !forward {
		keyvaluev1.RegisterKeyValueServer(srv, &kvServer{s: s})
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, s
}

func callCtx(t *testing.T, kv ...string) context.Context {
	return metadata.NewOutgoingContext(ctx(t), metadata.Pairs(kv...))
}

func TestInterceptor(t *testing.T) {
	for _, forward := range []bool{false, true} {
		name := "registered service (unary)"
		if forward {
			name = "unknown-service handler (stream, as the proxy)"
		}
		t.Run(name, func(t *testing.T) { testInterceptor(t, forward) })
	}
}

func testInterceptor(t *testing.T, forward bool) {
	e := setup(t, nil)
	conn, s := serve(t, e, forward)
	kv := keyvaluev1.NewKeyValueClient(conn)
	read := e.iss.MustMint(e.iss.Claims("alice", "prism:orders:read"))
	write := e.iss.MustMint(e.iss.Claims("bob", "prism:orders:read", "prism:orders:write"))
	expired := e.iss.MustMint(e.iss.Claims("carol", "prism:orders:read").With("exp", at(e, -auth.DefaultClockSkew*3)))

	refused := []struct {
		name string
		md   []string
		code codes.Code
	}{
		{"no authorization", []string{"x-prism-namespace", "orders"}, codes.Unauthenticated},
		{"doubled authorization", []string{"authorization", "Bearer " + read, "authorization", "Bearer " + read, "x-prism-namespace", "orders"}, codes.Unauthenticated},
		{"Basic scheme", []string{"authorization", "Basic YWxpY2U6c2VjcmV0", "x-prism-namespace", "orders"}, codes.Unauthenticated},
		{"Token scheme", []string{"authorization", "Token " + read, "x-prism-namespace", "orders"}, codes.Unauthenticated},
		{"no scheme", []string{"authorization", read, "x-prism-namespace", "orders"}, codes.Unauthenticated},
		{"Bearer without a token", []string{"authorization", "Bearer", "x-prism-namespace", "orders"}, codes.Unauthenticated},
		{"Bearer and a space", []string{"authorization", "Bearer ", "x-prism-namespace", "orders"}, codes.Unauthenticated},
		{"expired token", []string{"authorization", "Bearer " + expired, "x-prism-namespace", "orders"}, codes.Unauthenticated},
		{"garbage token", []string{"authorization", "Bearer a.b.c", "x-prism-namespace", "orders"}, codes.Unauthenticated},
		{"read token, write call", []string{"authorization", "Bearer " + read, "x-prism-namespace", "orders"}, codes.PermissionDenied},
		{"token for orders, namespace billing", []string{"authorization", "Bearer " + write, "x-prism-namespace", "billing"}, codes.PermissionDenied},
		{"no namespace", []string{"authorization", "Bearer " + write}, codes.InvalidArgument},
		{"namespace that is no name", []string{"authorization", "Bearer " + write, "x-prism-namespace", "../orders"}, codes.InvalidArgument},
		{"two namespaces", []string{"authorization", "Bearer " + write, "x-prism-namespace", "orders", "x-prism-namespace", "billing"}, codes.InvalidArgument},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			before, _, _ := s.get()
			var err error
			if tc.name == "read token, write call" {
				_, err = kv.Set(callCtx(t, tc.md...), &keyvaluev1.SetRequest{Key: "k"})
			} else {
				_, err = kv.Get(callCtx(t, tc.md...), &keyvaluev1.GetRequest{Key: "k"})
			}
			wantCode(t, err, tc.code)
			msg := status.Convert(err).Message()
			switch tc.code {
			case codes.Unauthenticated:
				if msg != "invalid or missing credentials" {
					t.Fatalf("message %q, want the generic one", msg)
				}
			case codes.PermissionDenied:
				if !strings.Contains(msg, "namespace") || !strings.Contains(msg, "access") {
					t.Fatalf("message %q does not name namespace and access", msg)
				}
			}
			if after, _, _ := s.get(); after != before {
				t.Fatal("the handler ran for a refused call")
			}
		})
	}

	t.Run("allowed calls reach the handler without the authorization metadata", func(t *testing.T) {
		for _, scheme := range []string{"Bearer ", "bearer ", "BEARER "} {
			if _, err := kv.Get(callCtx(t, "authorization", scheme+read, "x-prism-namespace", "orders", "x-request-id", "r1"),
				&keyvaluev1.GetRequest{Key: "k"}); err != nil {
				t.Fatalf("Get with %q: %v", scheme, err)
			}
			_, md, sub := s.get()
			if v := md.Get("authorization"); len(v) != 0 {
				t.Fatalf("the handler saw authorization metadata: %d values", len(v))
			}
			for k, vs := range md {
				for _, v := range vs {
					if strings.Contains(v, read) {
						t.Fatalf("the handler saw the token in metadata %q", k)
					}
				}
			}
			if md.Get("x-prism-namespace")[0] != "orders" || md.Get("x-request-id")[0] != "r1" {
				t.Fatalf("other metadata lost: %v", md)
			}
			if sub != "alice" {
				t.Fatalf("principal subject %q, want alice", sub)
			}
		}
		if _, err := kv.Set(callCtx(t, "authorization", "Bearer "+write, "x-prism-namespace", "orders"),
			&keyvaluev1.SetRequest{Key: "k"}); err != nil {
			t.Fatalf("Set with a write grant: %v", err)
		}
	})

	t.Run("health is public and answers without a token", func(t *testing.T) {
		if _, err := healthpb.NewHealthClient(conn).Check(ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health without a token: %v", err)
		}
	})

	if forward {
		t.Run("a method the table does not know needs write", func(t *testing.T) {
			const m = "/prism.keyvalue.v1.KeyValue/Frobnicate"
			err := conn.Invoke(callCtx(t, "authorization", "Bearer "+read, "x-prism-namespace", "orders"), m, &emptypb.Empty{}, &emptypb.Empty{})
			wantCode(t, err, codes.PermissionDenied)
			err = conn.Invoke(callCtx(t, "authorization", "Bearer "+write, "x-prism-namespace", "orders"), m, &emptypb.Empty{}, &emptypb.Empty{})
			if err != nil {
				t.Fatalf("unknown method with write: %v", err)
			}
		})
	}

	t.Run("repeated calls are answered from the cache", func(t *testing.T) {
		before := e.a.Stats()
		for range 10 {
			if _, err := kv.Get(callCtx(t, "authorization", "Bearer "+read, "x-prism-namespace", "orders"), &keyvaluev1.GetRequest{}); err != nil {
				t.Fatal(err)
			}
		}
		after := e.a.Stats()
		if after.CacheHits-before.CacheHits != 10 || after.CacheMisses != before.CacheMisses {
			t.Fatalf("stats before %+v after %+v, want 10 more hits and no miss", before, after)
		}
	})

	t.Run("refusals are logged with a reason, never with the token", func(t *testing.T) {
		logs := e.logs.String()
		if !strings.Contains(logs, "auth: call refused") || !strings.Contains(logs, `"reason":"no authorization metadata"`) ||
			!strings.Contains(logs, `authorization metadata sent 2 times`) || !strings.Contains(logs, `"exp\" not satisfied`) {
			t.Fatalf("logs lack refusal reasons:\n%s", logs)
		}
		for _, tok := range []string{read, write, expired, strings.Split(read, ".")[2]} {
			if strings.Contains(logs, tok) {
				t.Fatal("a token appears in the logs")
			}
		}
	})
}

func TestInterceptorStripsOnPublicServices(t *testing.T) {
	e := setup(t, nil)
	conn, s := serve(t, e, true, auth.WithPublicServices("prism.keyvalue.v1.KeyValue"))
	_, err := keyvaluev1.NewKeyValueClient(conn).Get(callCtx(t, "authorization", "Bearer whatever", "x-prism-namespace", "orders"),
		&keyvaluev1.GetRequest{})
	if err != nil {
		t.Fatalf("public service: %v", err)
	}
	if _, md, _ := s.get(); len(md.Get("authorization")) != 0 {
		t.Fatal("authorization reached the handler of a public service")
	}
	// Health is no longer public once the list is replaced.
	_, err = healthpb.NewHealthClient(conn).Check(ctx(t), &healthpb.HealthCheckRequest{})
	wantCode(t, err, codes.Unauthenticated)
}

// TestStreamEndsWhenItsTokenExpires: a stream authorised by a token ends
// with Unauthenticated (the generic message) once exp + clock_skew passes,
// and a handler that returns first keeps its own status.
func TestStreamEndsWhenItsTokenExpires(t *testing.T) {
	e := setup(t, func(c *auth.Config) { c.ClockSkew = 500 * time.Millisecond })
	srv := grpc.NewServer(auth.NewInterceptor(e.a).ServerOptions()...)
	srv.RegisterService(&grpc.ServiceDesc{ServiceName: "prism.pubsub.v1.PubSub", HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: "Subscribe", ServerStreams: true, ClientStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error {
				if err := ss.RecvMsg(&emptypb.Empty{}); err != nil {
					return err
				}
				if err := ss.SendMsg(&emptypb.Empty{}); err != nil {
					return err
				}
				<-ss.Context().Done()
				return status.FromContextError(ss.Context().Err()).Err()
			}}}}, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	tok := e.iss.MustMint(e.iss.Claims("alice", "prism:orders:read").With("exp", at(e, time.Second)))
	start := time.Now()
	cs, err := conn.NewStream(callCtx(t, "authorization", "Bearer "+tok, "x-prism-namespace", "orders"),
		&grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/prism.pubsub.v1.PubSub/Subscribe")
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(&emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(&emptypb.Empty{}); err != nil {
		t.Fatalf("the stream's first message, with the token valid: %v", err)
	}
	err = cs.RecvMsg(&emptypb.Empty{})
	wantCode(t, err, codes.Unauthenticated)
	if msg := status.Convert(err).Message(); msg != "invalid or missing credentials" {
		t.Errorf("message %q, want the generic one", msg)
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("the stream ended after %v, before exp + clock_skew (1.5s)", d)
	}
}

func TestOpenEnded(t *testing.T) {
	for m, want := range map[string]bool{
		"/prism.pubsub.v1.PubSub/Subscribe":     true,
		"/prism.registry.v1.Registry/Receive":   true,
		"/prism.pubsub.v1.PubSub/Publish":       false,
		"/prism.keyvalue.v1.KeyValue/Get":       false,
		"/prism.keyvalue.v1.KeyValue/Subscribe": false,
		"/prism.registry.v1.Registry/Enumerate": false,
	} {
		if got := auth.OpenEnded(m); got != want {
			t.Errorf("OpenEnded(%s) = %t, want %t", m, got, want)
		}
	}
}
