package client_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/reference/client"
)

// flaky answers Unavailable for the first fails calls of each method, and
// records every call's namespace.
type flaky struct {
	keyvaluev1.UnimplementedKeyValueServer
	mu    sync.Mutex
	fails int
	calls map[string]int
	ns    []string
	block bool
}

func (f *flaky) enter(ctx context.Context, method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	md, _ := metadata.FromIncomingContext(ctx)
	f.ns = append(f.ns, md.Get(client.NamespaceKey)...)
	if f.calls[method] <= f.fails {
		return status.Error(codes.Unavailable, "plugin restarting")
	}
	return nil
}

func (f *flaky) Get(ctx context.Context, r *keyvaluev1.GetRequest) (*keyvaluev1.GetResponse, error) {
	if f.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err := f.enter(ctx, "Get"); err != nil {
		return nil, err
	}
	return &keyvaluev1.GetResponse{Value: []byte("v:" + r.GetKey())}, nil
}

func (f *flaky) Delete(ctx context.Context, r *keyvaluev1.DeleteRequest) (*keyvaluev1.DeleteResponse, error) {
	if err := f.enter(ctx, "Delete"); err != nil {
		return nil, err
	}
	return &keyvaluev1.DeleteResponse{Existed: true}, nil
}

func serve(t *testing.T, f *flaky) string {
	t.Helper()
	f.calls = map[string]int{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	keyvaluev1.RegisterKeyValueServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestRetriesIdempotentCallsOnly(t *testing.T) {
	f := &flaky{fails: 2}
	c, err := client.New(serve(t, f), client.WithNamespace("orders"),
		client.WithRetryPolicy(client.RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Multiplier: 2}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := c.KeyValue().Get(context.Background(), "k")
	if err != nil || string(v) != "v:k" {
		t.Fatalf("Get: got %q, %v; want it to succeed after 2 retries", v, err)
	}
	_, err = c.KeyValue().Delete(context.Background(), "k")
	if client.Code(err) != codes.Unavailable {
		t.Errorf("Delete: got %v, want Unavailable (Delete is not idempotent, never retried)", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls["Get"] != 3 || f.calls["Delete"] != 1 {
		t.Errorf("attempts: got %v, want Get 3 (2 retries) and Delete 1", f.calls)
	}
	for _, ns := range f.ns {
		if ns != "orders" {
			t.Errorf("a call carried namespace %q, want orders", ns)
		}
	}
}

func TestWithoutRetries(t *testing.T) {
	f := &flaky{fails: 1}
	c, err := client.New(serve(t, f), client.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.KeyValue().Get(context.Background(), "k"); client.Code(err) != codes.Unavailable {
		t.Errorf("Get: got %v, want Unavailable without retries", err)
	}
}

func TestDefaultDeadline(t *testing.T) {
	f := &flaky{block: true}
	c, err := client.New(serve(t, f), client.WithTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.KeyValue().Get(context.Background(), "k")
	if client.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Get: got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Get took %v, want about the 50ms timeout", d)
	}
	if other := c.Namespace("other"); other.Conn() != c.Conn() {
		t.Error("Namespace: want the same connection")
	}
}
