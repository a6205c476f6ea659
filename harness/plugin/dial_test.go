package plugin_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/prism-suite/prism/harness/plugin"
)

// TestDialPIDFindsTheListeningSocket serves gRPC health in this process, on a
// unix socket and then on TCP, and checks that DialPID(our pid) reaches it.
func TestDialPIDFindsTheListeningSocket(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "p.sock")
			}
			lis, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			healthpb.RegisterHealthServer(srv, health.NewServer())
			go func() { _ = srv.Serve(lis) }()
			defer srv.Stop()

			target, err := plugin.ListenTarget(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			want := lis.Addr().String()
			if network == "unix" {
				want = "unix://" + want
			}
			if target != want {
				t.Fatalf("ListenTarget = %q, want %q", target, want)
			}
			conn, err := plugin.DialPID(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health through DialPID: %v, %v", resp, err)
			}
		})
	}
}
