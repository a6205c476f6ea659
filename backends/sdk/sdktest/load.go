// Package sdktest helps a plugin's own Go tests drive it the way the
// conformance suite does, in process: [Serve] serves a driver with the SDK
// over gRPC on a unix socket, and [ContendKeyValue] puts it under the
// contention load of the suite's contention specs (many clients inserting
// new keys at once, writers and readers sharing keys, Sets racing Deletes),
// small enough to run under `go test -race`, which is the point: a data race
// in the driver shows as a race report, a lost or torn value as a test
// failure.
package sdktest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/prism-suite/prism/backends/sdk"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// Serve serves d with the SDK on a unix socket for the test, initializes it
// with config (nil: empty) and starts it, and returns a connection to it.
// The server and connection end with the test.
func Serve(t testing.TB, d sdk.Driver, config map[string]any, opts ...sdk.ServerOption) *grpc.ClientConn {
	t.Helper()
	srv := sdk.NewServer(d, opts...)
	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "plugin.sock"))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go func() { _ = srv.GRPC().Serve(lis) }()
	t.Cleanup(func() { srv.Shutdown(5 * time.Second) })
	conn, err := grpc.NewClient("unix://"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial the plugin: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cfg, err := structpb.NewStruct(config)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	lc := lifecyclev1.NewLifecycleClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lc.Initialize(ctx, &lifecyclev1.InitializeRequest{Config: cfg, Namespace: "sdktest"}); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	if _, err := lc.Start(ctx, &lifecyclev1.StartRequest{}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return conn
}

// Load sizes [ContendKeyValue]. The zero value means [DefaultLoad].
type Load struct {
	// Clients insert NewKeys new keys each, all at once.
	Clients, NewKeys int
	// Writers and Readers share SharedKeys keys; each writer makes Writes Sets.
	Writers, Readers, SharedKeys, Writes int
}

// DefaultLoad is a load that runs in a few seconds under -race on a busy
// machine: 32 clients inserting 40 new keys each; 8 writers (60 Sets each)
// and 8 readers on 4 keys, then the same keys Set and deleted at once.
func DefaultLoad() Load {
	return Load{Clients: 32, NewKeys: 40, Writers: 8, Readers: 8, SharedKeys: 4, Writes: 60}
}

// ContendKeyValue runs the contention load against kv under prefix and
// fails t for every error, lost key, or value no writer wrote to that key,
// and unless each shared key ends holding the last value some writer wrote
// to it. It deletes what it wrote.
func ContendKeyValue(t testing.TB, kv keyvaluev1.KeyValueClient, prefix string, load Load) {
	t.Helper()
	if load == (Load{}) {
		load = DefaultLoad()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		mu   sync.Mutex
		errs []string
		made []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	check := func(what string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("%s:\n%s", what, strings.Join(errs, "\n"))
		}
	}
	defer func() {
		for _, k := range made {
			_, _ = kv.Delete(context.Background(), &keyvaluev1.DeleteRequest{Key: k})
		}
	}()

	// Many clients insert new keys at once, then read every key back.
	var wg sync.WaitGroup
	keyOf := func(c, i int) string { return fmt.Sprintf("%snew/%03d/%04d", prefix, c, i) }
	valueOf := func(c, i int) []byte { return []byte(fmt.Sprintf("client %d key %d", c, i)) }
	for c := range load.Clients {
		for i := range load.NewKeys {
			made = append(made, keyOf(c, i))
		}
	}
	for _, phase := range []string{"insert", "read back"} {
		for c := range load.Clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range load.NewKeys {
					k, want := keyOf(c, i), valueOf(c, i)
					if phase == "insert" {
						if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: k, Value: want}); err != nil {
							fail("Set(%q): %v", k, err)
							return
						}
						continue
					}
					resp, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: k})
					if err != nil || !bytes.Equal(resp.GetValue(), want) {
						fail("Get(%q) = %q, %v; want %q", k, resp.GetValue(), err, want)
					}
				}
			}()
		}
		wg.Wait()
		check(fmt.Sprintf("%d clients, %d new keys each: %s", load.Clients, load.NewKeys, phase))
	}

	// Writers and readers share keys; then Sets race Deletes on them.
	shared := make([]string, load.SharedKeys)
	for i := range shared {
		shared[i] = fmt.Sprintf("%sshared/%d", prefix, i)
		made = append(made, shared[i])
	}
	value := func(key string, w, n int) []byte { return []byte(fmt.Sprintf("%s|writer %d|write %d", key, w, n)) }
	written := func(key string, v []byte) bool {
		var w, n int
		rest, ok := strings.CutPrefix(string(v), key+"|")
		if !ok {
			return false
		}
		if _, err := fmt.Sscanf(rest, "writer %d|write %d", &w, &n); err != nil {
			return false
		}
		return w >= 0 && w < load.Writers && n >= 0 && n < load.Writes && bytes.Equal(v, value(key, w, n))
	}
	for _, k := range shared {
		if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: k, Value: value(k, 0, 0)}); err != nil {
			t.Fatalf("Set(%q): %v", k, err)
		}
	}
	for _, deleting := range []bool{false, true} {
		var done atomic.Bool
		var writers, readers sync.WaitGroup
		for w := range load.Writers {
			writers.Add(1)
			go func() {
				defer writers.Done()
				for n := range load.Writes {
					k := shared[(w+n)%len(shared)]
					var err error
					if deleting && (w+n)%3 == 0 {
						_, err = kv.Delete(ctx, &keyvaluev1.DeleteRequest{Key: k})
					} else {
						_, err = kv.Set(ctx, &keyvaluev1.SetRequest{Key: k, Value: value(k, w, n)})
					}
					if err != nil {
						fail("writer %d: %v", w, err)
						return
					}
				}
			}()
		}
		for r := range load.Readers {
			readers.Add(1)
			go func() {
				defer readers.Done()
				for n := 0; !done.Load() && n < 4*load.Writes; n++ {
					k := shared[(r+n)%len(shared)]
					resp, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: k})
					if status.Code(err) == codes.NotFound && deleting {
						continue
					}
					if err != nil || !written(k, resp.GetValue()) {
						fail("reader %d: Get(%q) = %q, %v; want a value some writer wrote to it", r, k, resp.GetValue(), err)
					}
				}
			}()
		}
		writers.Wait()
		done.Store(true)
		readers.Wait()
		check(fmt.Sprintf("%d writers and %d readers on %d keys (deletes: %v)", load.Writers, load.Readers, len(shared), deleting))
	}
	for _, k := range shared {
		resp, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: k})
		if status.Code(err) == codes.NotFound {
			continue // the last word may have been a Delete
		}
		again, err2 := kv.Get(ctx, &keyvaluev1.GetRequest{Key: k})
		if err != nil || err2 != nil || !written(k, resp.GetValue()) || !bytes.Equal(resp.GetValue(), again.GetValue()) {
			t.Errorf("after the writers stopped, %q = %q then %q (%v, %v); want one value some writer wrote, twice", k, resp.GetValue(), again.GetValue(), err, err2)
		}
	}
}
