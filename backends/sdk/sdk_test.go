package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// basicOnly declares keyvalue.basic and nothing else.
type basicOnly struct{ *memstore.Store }

func (b basicOnly) Set(ctx context.Context, k string, v []byte) error { return b.Store.Set(ctx, k, v) }
func (b basicOnly) Get(ctx context.Context, k string) ([]byte, error) { return b.Store.Get(ctx, k) }
func (b basicOnly) Delete(ctx context.Context, k string) (bool, error) {
	return b.Store.Delete(ctx, k)
}
func (b basicOnly) Exists(ctx context.Context, k string) (bool, error) {
	return b.Store.Exists(ctx, k)
}

type onlyDriver struct{ sdk.Driver }

type basicDriver struct {
	sdk.Driver
	sdk.KeyValueBasic
}

func serve(t *testing.T, d sdk.Driver) (lifecyclev1.LifecycleClient, keyvaluev1.KeyValueClient) {
	t.Helper()
	conn := serveConn(t, d)
	return lifecyclev1.NewLifecycleClient(conn), keyvaluev1.NewKeyValueClient(conn)
}

// serveConn serves d on a unix socket for the test and returns a connection to it.
func serveConn(t *testing.T, d sdk.Driver) *grpc.ClientConn {
	t.Helper()
	srv := sdk.NewServer(d)
	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "p.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.GRPC().Serve(lis) }()
	t.Cleanup(srv.GRPC().Stop)
	conn, err := target.Dial("unix://" + lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func start(t *testing.T, lc lifecyclev1.LifecycleClient) {
	t.Helper()
	ctx := context.Background()
	if _, err := lc.Initialize(ctx, &lifecyclev1.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Start(ctx, &lifecyclev1.StartRequest{}); err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, c codes.Code, field string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != c || !strings.Contains(st.Message(), field) {
		t.Fatalf("got %s (%q), want %s naming %q", st.Code(), st.Message(), c, field)
	}
}

func TestCapabilitiesFollowInterfaces(t *testing.T) {
	store := memstore.New()
	all := sdk.Capabilities(store)
	want := []capability.Name{capability.KeyValueBasic, capability.KeyValueTTL, capability.KeyValueScan, capability.KeyValueBatch, capability.KeyValueLinearizable,
		capability.PubSubBasic, capability.PubSubOrdered, capability.PubSubQueue}
	if !slices.Equal(all, want) {
		t.Fatalf("memstore declares %v, want %v", all, want)
	}
	if got := sdk.Capabilities(basicDriver{store, basicOnly{store}}); !slices.Equal(got, []capability.Name{capability.KeyValueBasic}) {
		t.Fatalf("basic-only driver declares %v", got)
	}
	if got := sdk.Capabilities(onlyDriver{store}); len(got) != 0 {
		t.Fatalf("driver without data interfaces declares %v", got)
	}
}

func TestUndeclaredCapabilityIsUnimplemented(t *testing.T) {
	store := memstore.New()
	lc, kv := serve(t, basicDriver{store, basicOnly{store}})
	start(t, lc)
	ctx := context.Background()
	_, err := kv.Scan(ctx, &keyvaluev1.ScanRequest{Prefix: "a"})
	wantCode(t, err, codes.Unimplemented, "keyvalue.scan")
	_, err = kv.Set(ctx, &keyvaluev1.SetRequest{Key: "a", Value: []byte("v"), Ttl: durationpb.New(time.Second)})
	wantCode(t, err, codes.Unimplemented, "keyvalue.ttl")
	d, err := lc.Describe(ctx, &lifecyclev1.DescribeRequest{})
	if err != nil || len(d.GetCapabilities()) != 1 {
		t.Fatalf("Describe = %v, %v; want one capability", d, err)
	}
}

func TestStateMachine(t *testing.T) {
	lc, kv := serve(t, memstore.New())
	ctx := context.Background()
	_, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, err, codes.FailedPrecondition, "Initialize")
	_, err = lc.Start(ctx, &lifecyclev1.StartRequest{})
	wantCode(t, err, codes.FailedPrecondition, "Initialize")
	h, _ := lc.HealthCheck(ctx, &lifecyclev1.HealthCheckRequest{})
	if h.GetStatus() != lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY {
		t.Fatalf("health before Initialize = %v, want UNHEALTHY", h.GetStatus())
	}
	start(t, lc)
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	_, err = lc.Initialize(ctx, &lifecyclev1.InitializeRequest{})
	wantCode(t, err, codes.FailedPrecondition, "before Start")
	if _, err := lc.Drain(ctx, &lifecyclev1.DrainRequest{Deadline: durationpb.New(time.Second)}); err != nil {
		t.Fatal(err)
	}
	_, err = kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, err, codes.Unavailable, "draining")
	if _, err := lc.Stop(ctx, &lifecyclev1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestValidationNamesTheField(t *testing.T) {
	lc, kv := serve(t, memstore.New())
	start(t, lc)
	ctx := context.Background()
	_, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "", Value: []byte("v")})
	wantCode(t, err, codes.InvalidArgument, "key")
	_, err = kv.Set(ctx, &keyvaluev1.SetRequest{Key: strings.Repeat("k", sdk.DefaultMaxKeyBytes+1)})
	wantCode(t, err, codes.InvalidArgument, "key")
	_, err = kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: make([]byte, sdk.DefaultMaxValueBytes+1)})
	wantCode(t, err, codes.InvalidArgument, "value")
	_, err = kv.Scan(ctx, &keyvaluev1.ScanRequest{PageSize: -1})
	wantCode(t, err, codes.InvalidArgument, "page_size")
	_, err = kv.Scan(ctx, &keyvaluev1.ScanRequest{PageSize: sdk.DefaultMaxPageSize + 1})
	wantCode(t, err, codes.InvalidArgument, "page_size")
	_, err = kv.BatchGet(ctx, &keyvaluev1.BatchGetRequest{Keys: []string{"a", ""}})
	wantCode(t, err, codes.InvalidArgument, "keys[1]")
	_, err = kv.BatchGet(ctx, &keyvaluev1.BatchGetRequest{Keys: make([]string, sdk.DefaultMaxBatchSize+1)})
	wantCode(t, err, codes.InvalidArgument, "batch")
	_, err = kv.Expire(ctx, &keyvaluev1.ExpireRequest{Key: "k"})
	wantCode(t, err, codes.InvalidArgument, "ttl")
}

func TestToStatus(t *testing.T) {
	cases := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("get: %w", sdk.ErrNotFound), codes.NotFound},
		{fmt.Errorf("set: %w", sdk.ErrFull), codes.ResourceExhausted},
		{fmt.Errorf("dial: %w", sdk.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("auth: %w", sdk.ErrUnauthenticated), codes.Unauthenticated},
		{sdk.InvalidConfig("address", "missing"), codes.InvalidArgument},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{status.Error(codes.AlreadyExists, "dup"), codes.AlreadyExists},
		{errors.New("boom"), codes.Internal},
	}
	for _, c := range cases {
		if got := status.Code(sdk.ToStatus(c.err)); got != c.want {
			t.Errorf("ToStatus(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// TestServeByHand runs this test binary as a plugin without the host's magic
// variable and checks that it explains itself instead of serving.
func TestServeByHand(t *testing.T) {
	if os.Getenv("SDK_TEST_SERVE") == "1" {
		os.Exit(sdk.Serve(memstore.New()))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeByHand$")
	cmd.Env = append(os.Environ(), "SDK_TEST_SERVE=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit = %v, want exit status 1; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "This binary is a Prism plugin") {
		t.Fatalf("output does not explain how to run a plugin:\n%s", out)
	}
}
