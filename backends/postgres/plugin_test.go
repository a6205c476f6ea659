package postgres_test

import (
	"context"
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

	"github.com/prism-suite/prism/backends/postgres"
	"github.com/prism-suite/prism/backends/sdk"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// TestThroughTheSDK serves the driver with the SDK over gRPC on 127.0.0.1
// and checks the codes the protocol promises, the declared capabilities,
// Unavailable while the server is down and recovery without a restart of
// the plugin once it is back, and that no password reaches the logs.
func TestThroughTheSDK(t *testing.T) {
	s := startServer(t)
	logs := &syncWriter{}
	srv := sdk.NewServer(postgres.New(), sdk.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
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
	ctx := testCtx(t, 60*time.Second)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	_ = closed.Close()
	for _, tc := range []struct {
		values map[string]any
		creds  map[string]string
		code   codes.Code
	}{
		{map[string]any{"address": s.addr, "pool_sise": 3.0}, s.admin(), codes.InvalidArgument},
		{map[string]any{"address": closedAddr}, s.admin(), codes.Unavailable},
		{map[string]any{"address": s.addr}, map[string]string{"username": "postgres", "password": "wr0ng-guess"}, codes.Unauthenticated},
		{map[string]any{"address": s.addr}, s.admin(), codes.OK},
	} {
		cfg, err := structpb.NewStruct(tc.values)
		if err != nil {
			t.Fatal(err)
		}
		_, err = lc.Initialize(ctx, &lifecyclev1.InitializeRequest{Config: cfg, Credentials: tc.creds, Namespace: "sdk"})
		if status.Code(err) != tc.code {
			t.Errorf("Initialize(%v) = %v, want %v", tc.values, err, tc.code)
		}
	}
	if _, err := lc.Start(ctx, &lifecyclev1.StartRequest{}); err != nil {
		t.Fatal(err)
	}
	desc, err := lc.Describe(ctx, &lifecyclev1.DescribeRequest{})
	if err != nil || desc.GetName() != "postgres" || len(desc.GetCapabilities()) != 6 { // keyvalue.*, auth.backend-credentials, auth.rotation
		t.Errorf("Describe = %v, %v; want postgres with 6 capabilities", desc, err)
	}
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}

	s.stop()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = kv.Get(cctx, &keyvaluev1.GetRequest{Key: "k"})
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Get with postgres down = %v, want Unavailable", err)
	}
	h, err := lc.HealthCheck(ctx, &lifecyclev1.HealthCheckRequest{})
	if err != nil || h.GetStatus() != lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY {
		t.Errorf("HealthCheck with postgres down = %v, %v; want UNHEALTHY", h, err)
	}

	s.start(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
		if err == nil {
			if string(r.GetValue()) != "v" {
				t.Errorf("Get after the restart = %q, want v", r.GetValue())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get still fails 20s after postgres came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling, with the deadline above
	}

	srv.Shutdown(time.Second)
	if strings.Contains(logs.String(), s.password) || strings.Contains(logs.String(), "wr0ng-guess") {
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
