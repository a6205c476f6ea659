package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/client"
	"github.com/prism-suite/prism/reference/registry"
	"github.com/prism-suite/prism/reference/registry/filter"
)

// serveRegistry serves a registry coordinator over an in-process memstore
// on 127.0.0.1 and returns its address.
func serveRegistry(t *testing.T) string {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	listen := func(srv *grpc.Server) string {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(srv.Stop)
		return lis.Addr().String()
	}
	plugin := sdk.NewServer(memstore.New(), sdk.WithLogger(quiet))
	pc, err := client.New(listen(plugin.GRPC()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	lc := lifecyclev1.NewLifecycleClient(pc.Conn())
	ctx := context.Background()
	desc, err := lc.Describe(ctx, &lifecyclev1.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Initialize(ctx, &lifecyclev1.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Start(ctx, &lifecyclev1.StartRequest{}); err != nil {
		t.Fatal(err)
	}
	slot := func() (grpc.ClientConnInterface, *lifecyclev1.DescribeResponse, error) { return pc.Conn(), desc, nil }
	c, err := registry.New("devices", registry.Config{}, slot, slot, registry.WithLogger(quiet), registry.WithMutant(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	srv := grpc.NewServer()
	registryv1.RegisterRegistryServer(srv, registry.NewServer(func(context.Context, string) (*registry.Coordinator, func(error), error) {
		return c, func(error) {}, nil
	}))
	return listen(srv)
}

func TestRegistryClient(t *testing.T) {
	c, err := client.New(serveRegistry(t), client.WithNamespace("devices"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := c.Registry()
	ctx := context.Background()
	for i := range 5 {
		_, exp, err := r.Register(ctx, client.Registration{Identity: fmt.Sprintf("dev-%d", i), TTL: time.Minute,
			Metadata: map[string]any{"floor": i, "ratio": 0.5, "type": "sensor", "on": i%2 == 0, "tags": []string{"a"}}})
		if err != nil || time.Until(exp) < 50*time.Second {
			t.Fatalf("Register: %v (expires %v)", err, exp)
		}
	}
	if _, _, err := r.Register(ctx, client.Registration{Identity: "x", TTL: time.Minute, Metadata: map[string]any{"bad": struct{}{}}}); err == nil {
		t.Fatal("a metadata value of an unsupported type must be refused")
	}
	f, err := filter.Parse(`floor >= 1 and on = true`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for id, err := range r.Enumerate(ctx, f, client.EnumerateOptions{PageSize: 1, Metadata: true}) {
		if err != nil {
			t.Fatal(err)
		}
		if id.GetMetadata()["type"].GetStringValue() != "sensor" || id.GetMetadata()["tags"].GetListValue().GetValues()[0] != "a" {
			t.Fatalf("metadata did not come back: %v", id)
		}
		got = append(got, id.GetIdentity())
	}
	if fmt.Sprint(got) != "[dev-2 dev-4]" {
		t.Fatalf("Enumerate: got %v, want [dev-2 dev-4]", got)
	}
	inbox, err := r.Receive(ctx, "dev-2")
	if err != nil {
		t.Fatal(err)
	}
	defer inbox.Close()
	resp, err := r.Multicast(ctx, f, []byte("hello"), client.MulticastOptions{Metadata: map[string]string{"k": "v"}, Timeout: 2 * time.Second})
	if err != nil || resp.GetTargetCount() != 2 || resp.GetDeliveredCount() != 1 {
		t.Fatalf("Multicast: %v, %v; want 2 targets, 1 delivered (dev-4 has no receiver)", resp, err)
	}
	m, err := inbox.Next()
	if err != nil || string(m.GetPayload()) != "hello" || m.GetMetadata()["k"] != "v" || m.GetMulticastId() != resp.GetMulticastId() {
		t.Fatalf("Next: %v, %v", m, err)
	}
	if _, err := r.Multicast(ctx, nil, nil, client.MulticastOptions{AtLeastOnce: true}); client.Code(err).String() != "FailedPrecondition" {
		t.Fatalf("at-least-once on memstore: %v, want FailedPrecondition", err)
	}
	existed, err := r.Unregister(ctx, "dev-2")
	if err != nil || !existed {
		t.Fatalf("Unregister: %v, %v", existed, err)
	}
}
