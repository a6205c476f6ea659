package redis_test

import (
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// TestThroughTheSDK serves the driver with the SDK over gRPC on 127.0.0.1 and
// checks that its errors arrive as the status codes the protocol promises.
func TestThroughTheSDK(t *testing.T) {
	m := startMiniredis(t)
	m.RequireAuth("s3cret-Pa55")
	logs := &syncWriter{}
	srv := sdk.NewServer(redis.New(), sdk.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.GRPC().Serve(l) }()
	t.Cleanup(func() { srv.Shutdown(time.Second) })
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	lc := lifecyclev1.NewLifecycleClient(cc)
	kv := keyvaluev1.NewKeyValueClient(cc)
	ctx := testCtx(t, 10*time.Second)

	init := func(values map[string]any, creds map[string]string) error {
		cfg, err := structpb.NewStruct(values)
		if err != nil {
			t.Fatal(err)
		}
		_, err = lc.Initialize(ctx, &lifecyclev1.InitializeRequest{Config: cfg, Credentials: creds, Namespace: "ns"})
		return err
	}
	for _, tc := range []struct {
		values map[string]any
		creds  map[string]string
		code   codes.Code
	}{
		{map[string]any{"address": m.Addr(), "pool_sise": 3}, nil, codes.InvalidArgument},
		{map[string]any{"address": freeAddr(t)}, nil, codes.Unavailable},
		{map[string]any{"address": m.Addr()}, map[string]string{"password": "wr0ng-guess"}, codes.Unauthenticated},
		{map[string]any{"address": m.Addr()}, map[string]string{"password": "s3cret-Pa55"}, codes.OK},
	} {
		if err := init(tc.values, tc.creds); status.Code(err) != tc.code {
			t.Errorf("Initialize(%v) = %v, want %v", tc.values, err, tc.code)
		}
	}
	if _, err := lc.Start(ctx, &lifecyclev1.StartRequest{}); err != nil {
		t.Fatal(err)
	}
	desc, err := lc.Describe(ctx, &lifecyclev1.DescribeRequest{})
	if err != nil || desc.GetName() != "redis" || len(desc.GetCapabilities()) != 8 { // keyvalue.*, pubsub.basic, pubsub.ordered, auth.backend-credentials, auth.rotation
		t.Errorf("Describe = %v, %v; want redis with 8 capabilities", desc, err)
	}

	if _, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "missing"}); status.Code(err) != codes.NotFound {
		t.Errorf("Get(missing) = %v, want NotFound", err)
	}
	for _, k := range []string{"s/1", "s/2", "s/3"} {
		if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: k, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := kv.Scan(ctx, &keyvaluev1.ScanRequest{Prefix: "s/", PageSize: 2})
	if err != nil || len(resp.GetEntries()) != 2 || resp.GetNextCursor() == "" {
		t.Fatalf("Scan page 1 = %v, %v; want 2 entries and a cursor", resp, err)
	}
	resp, err = kv.Scan(ctx, &keyvaluev1.ScanRequest{Prefix: "s/", PageSize: 2, Cursor: resp.GetNextCursor()})
	if err != nil || len(resp.GetEntries()) != 1 || resp.GetEntries()[0].GetKey() != "s/3" || resp.GetNextCursor() != "" {
		t.Errorf("Scan page 2 = %v, %v; want s/3 and no cursor", resp, err)
	}
	if _, err := kv.Scan(ctx, &keyvaluev1.ScanRequest{Prefix: "s/", Cursor: "bogus"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Scan(bogus cursor) = %v, want InvalidArgument", err)
	}

	h, err := lc.HealthCheck(ctx, &lifecyclev1.HealthCheckRequest{})
	if err != nil || h.GetStatus() != lifecyclev1.HealthCheckResponse_STATUS_HEALTHY {
		t.Errorf("HealthCheck = %v, %v; want HEALTHY", h, err)
	}
	m.Close()
	if _, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "s/1"}); status.Code(err) != codes.Unavailable {
		t.Errorf("Get with redis down = %v, want Unavailable", err)
	}
	h, err = lc.HealthCheck(ctx, &lifecyclev1.HealthCheckRequest{})
	if err != nil || h.GetStatus() != lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY {
		t.Errorf("HealthCheck with redis down = %v, %v; want UNHEALTHY", h, err)
	}

	srv.Shutdown(time.Second)
	if strings.Contains(logs.String(), "s3cret") || strings.Contains(logs.String(), "wr0ng-guess") {
		t.Errorf("plugin logs show a password:\n%s", logs.String())
	}
}

// syncWriter is a log sink safe for the server's goroutines.
type syncWriter struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
