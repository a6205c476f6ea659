package pythonmemstore_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/prism-suite/prism/proto/handshake"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

// launch starts plugin.py as a host does and returns a connection to it; the
// plugin is stopped (stdin closed) and must exit 0 when the test ends.
func launch(t *testing.T) *grpc.ClientConn {
	t.Helper()
	if out, err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf").CombinedOutput(); err != nil {
		t.Skipf("Debian's python3-grpcio and python3-protobuf are not installed (.ci/run installs them): %v %s", err, out)
	}
	cmd := exec.Command("./plugin.py")
	cmd.Env = append(os.Environ(), handshake.EnvMagic+"="+handshake.MagicValue, "PRISM_PLUGIN_SOCKET_DIR="+t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		stdin.Close()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("plugin exit after stdin closed: %v, want status 0", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("plugin did not exit within 10s of stdin closing")
		}
	})
	lines := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- l
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(20 * time.Second):
		t.Fatal("no handshake line within 20s")
	}
	hs, err := handshake.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(hs.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func details(t *testing.T, lc lifecyclev1.LifecycleClient) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := lc.HealthCheck(ctx, &lifecyclev1.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("HealthCheck: %v", err)
	}
	return h.GetDetails()
}

func wantDetails(t *testing.T, lc lifecyclev1.LifecycleClient, when string, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := details(t, lc)
		ok := true
		for k, v := range want {
			ok = ok && got[k] == v
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: health details %v, want %v", when, got, want)
		}
		time.Sleep(20 * time.Millisecond) // polling a counter until a deadline, not waiting for readiness
	}
}

// TestStandardDetailsTrailerAndDecodeFailures checks what no spec of a
// memstore run reads (PROTOCOL.md §3, §5, §11): the three standard health
// details in every state, counted as calls come and go; the x-request-id
// trailer; and InvalidArgument for a request that does not decode.
func TestStandardDetailsTrailerAndDecodeFailures(t *testing.T) {
	conn := launch(t)
	lc := lifecyclev1.NewLifecycleClient(conn)
	kv := keyvaluev1.NewKeyValueClient(conn)
	ps := pubsubv1.NewPubSubClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	zero := map[string]string{"prism.inflight_calls": "0", "prism.open_streams": "0", "prism.authorization_headers_seen": "0"}
	wantDetails(t, lc, "new", zero)

	// A refused data call with a token counts as seen, never as in flight.
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer not-for-plugins")
	if _, err := kv.Get(actx, &keyvaluev1.GetRequest{Key: "k"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Get before Start: %v, want FailedPrecondition", err)
	}
	wantDetails(t, lc, "after a refused call with authorization", map[string]string{
		"prism.inflight_calls": "0", "prism.authorization_headers_seen": "1"})

	if _, err := lc.Initialize(ctx, &lifecyclev1.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Start(ctx, &lifecyclev1.StartRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(actx, &keyvaluev1.GetRequest{Key: "k"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Get of a missing key: %v, want NotFound", err)
	}
	// A call without the header, and a lifecycle call with it, do not count.
	if _, err := kv.Exists(ctx, &keyvaluev1.ExistsRequest{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Describe(actx, &lifecyclev1.DescribeRequest{}); err != nil {
		t.Fatal(err)
	}
	wantDetails(t, lc, "started", map[string]string{"prism.inflight_calls": "0", "prism.authorization_headers_seen": "2"})

	// An open subscription is one call in flight and one open stream, until cancelled.
	sctx, scancel := context.WithCancel(ctx)
	stream, err := ps.Subscribe(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
		Subscription: &pubsubv1.Subscription{Topic: "t"}}}); err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetSubscribed() == nil {
		t.Fatalf("first event: %v, %v; want Subscribed", ev, err)
	}
	wantDetails(t, lc, "a subscription open", map[string]string{"prism.inflight_calls": "1", "prism.open_streams": "1"})
	scancel()
	wantDetails(t, lc, "the subscription cancelled", map[string]string{"prism.inflight_calls": "0", "prism.open_streams": "0"})

	// x-request-id comes back in the trailer.
	var trailer metadata.MD
	rctx := metadata.AppendToOutgoingContext(ctx, "x-request-id", "rid-42")
	if _, err := kv.Set(rctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}, grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	if got := trailer.Get("x-request-id"); len(got) != 1 || got[0] != "rid-42" {
		t.Errorf("x-request-id trailer %q, want [rid-42]", got)
	}

	// A key that is not UTF-8 does not decode: InvalidArgument, not Internal.
	raw := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff, 0xfe})
	var reply []byte
	err = conn.Invoke(ctx, "/prism.keyvalue.v1.KeyValue/Get", raw, &reply, grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Get with a non-UTF-8 key: %v, want InvalidArgument", err)
	}
	if d := details(t, lc); d["prism.inflight_calls"] != "0" || d["prism.authorization_headers_seen"] != "2" {
		t.Errorf("health details at the end %v", d)
	}
	if got := details(t, lc)["python_memstore.keys"]; got != "1" {
		t.Errorf("python_memstore.keys = %q, want 1", got)
	}
}

// rawCodec sends bytes as they are, to send a message no generated code would.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }

func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestPythonUnitTests runs test_memstore.py (Python's unittest) with
// Debian's Python.
func TestPythonUnitTests(t *testing.T) {
	if out, err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf").CombinedOutput(); err != nil {
		t.Skipf("Debian's python3-grpcio and python3-protobuf are not installed (.ci/run installs them): %v %s", err, out)
	}
	cmd := exec.Command("/usr/bin/python3", "-B", "-m", "unittest", "discover", "-s", ".", "-p", "test_*.py")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python3 -m unittest: %v\n%s", err, out)
	}
}
