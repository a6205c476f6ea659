package proxy_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/reference/proxy"
)

// TestAPluginThatCannotStartDoesNotBlockTheProxy: a wrapper script whose
// background child holds its pipes and which exits 1 leaves the proxy
// listening, its namespace Unavailable with the reason, the other namespace
// serving, and no process behind once the proxy has shut down.
func TestAPluginThatCannotStartDoesNotBlockTheProxy(t *testing.T) {
	mark := "PRISM_TEST_MARK=" + strconv.FormatInt(time.Now().UnixNano(), 36)
	k, v, _ := strings.Cut(mark, "=")
	t.Setenv(k, v) // every plugin process and its children inherit it
	wrapper := filepath.Join(t.TempDir(), "wrapper.sh")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\necho starting >&2\nsleep 45 &\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(kvNamespace("ok", ""),
		proxy.Namespace{Name: "bad", Pattern: proxy.KeyValue, Plugin: &proxy.PluginSpec{Binary: wrapper}})
	cfg.Restart = proxy.Backoff{InitialBackoff: time.Minute, MaxBackoff: time.Minute}
	p, err := proxy.New(cfg, proxy.WithPluginStderr(&strings.Builder{}))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("Start took %v with a plugin that cannot start, want well under its 10 s handshake timeout", d)
	}
	conn := dial(t, p.Addr())
	defer conn.Close()
	kv := keyvaluev1.NewKeyValueClient(conn)

	cctx, ccancel := nsCtx("bad")
	defer ccancel()
	_, err = kv.Get(cctx, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get on the namespace whose plugin cannot start", err, codes.Unavailable)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "exited without a handshake line") {
		t.Errorf("Unavailable message %q does not say why the plugin is down", msg)
	}
	octx, ocancel := nsCtx("ok")
	defer ocancel()
	if _, err := kv.Set(octx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Errorf("Set on the healthy namespace: %v", err)
	}

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	began = time.Now()
	_ = p.Shutdown(sctx)
	if d := time.Since(began); d > 8*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	waitNoProcess(t, mark, 5*time.Second)
}

// TestPluginOutputIsQuotedShort: a plugin that prints a handshake line with
// a 3 KB version field and a 1 MB line on stderr costs clients, /status and
// the logs a few KiB at most (issue 13, item 4).
func TestPluginOutputIsQuotedShort(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.sh")
	script := "#!/bin/sh\nhead -c 1000000 /dev/zero | tr '\\0' e >&2\necho >&2\n" +
		"printf 'PRISM-PLUGIN|%s|unix|/tmp/x\\n' \"$(head -c 3000 /dev/zero | tr '\\0' 9)\"\nexit 1\n"
	if err := os.WriteFile(bad, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(proxy.Namespace{Name: "bad", Pattern: proxy.KeyValue, Plugin: &proxy.PluginSpec{Binary: bad}})
	cfg.Restart = proxy.Backoff{InitialBackoff: time.Minute, MaxBackoff: time.Minute}
	logs := &syncBuilder{}
	p, err := proxy.New(cfg, proxy.WithPluginStderr(logs))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer p.Shutdown(context.Background())
	conn := dial(t, p.Addr())
	defer conn.Close()
	cctx, ccancel := nsCtx("bad")
	defer ccancel()
	_, err = keyvaluev1.NewKeyValueClient(conn).Get(cctx, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get", err, codes.Unavailable)
	if msg := status.Convert(err).Message(); len(msg) > 2<<10 || !strings.Contains(msg, "3000 bytes") {
		t.Errorf("Unavailable message is %d bytes (want at most 2 KiB, giving the field's length): %.400s", len(msg), msg)
	}
	if body := httpGet(t, "http://"+p.MetricsAddr()+"/status"); len(body) > 8<<10 {
		t.Errorf("/status is %d bytes, want at most 8 KiB", len(body))
	}
	if n := logs.Len(); n > 64<<10 {
		t.Errorf("the proxy logged %d bytes for one failed start, want at most 64 KiB", n)
	}
}

// syncBuilder is a strings.Builder safe for concurrent writes.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// waitNoProcess polls the process table until no live process carries mark
// in its environment, or fails after timeout listing what is left.
func waitNoProcess(t *testing.T, mark string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		procs, err := procfs.AllProcs()
		if err != nil {
			t.Fatalf("read process table: %v", err)
		}
		var left []string
		for _, pr := range procs {
			env, err := pr.Environ()
			if err != nil || !slices.Contains(env, mark) || pr.PID == os.Getpid() {
				continue
			}
			if st, err := pr.Stat(); err == nil && st.State != "Z" {
				left = append(left, st.Comm+"["+strconv.Itoa(st.PID)+"]")
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes still running %v after Shutdown: %v", timeout, left)
		}
		time.Sleep(20 * time.Millisecond) // polling the process table, not waiting for readiness
	}
}

// TestAHangingPluginNeverDelaysListening: a plugin that never prints its
// handshake does not keep Listen from returning; until it serves (here:
// never), its namespace answers Unavailable and its health is NOT_SERVING,
// while the proxy itself serves (issue 13, item 1).
func TestAHangingPluginNeverDelaysListening(t *testing.T) {
	hang := filepath.Join(t.TempDir(), "hang.sh")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(testConfig(proxy.Namespace{Name: "hangs", Pattern: proxy.KeyValue, Plugin: &proxy.PluginSpec{Binary: hang}}))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	began := time.Now()
	if err := p.Listen(context.Background()); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer p.Shutdown(context.Background())
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("Listen took %v with a plugin that never handshakes, want at once", d)
	}
	conn := dial(t, p.Addr())
	defer conn.Close()
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	hc := healthpb.NewHealthClient(conn)
	if resp, err := hc.Check(hctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("the proxy's own health: %v %v, want SERVING", resp.GetStatus(), err)
	}
	if resp, err := hc.Check(hctx, &healthpb.HealthCheckRequest{Service: "hangs"}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health of the namespace whose plugin hangs: %v %v, want NOT_SERVING", resp.GetStatus(), err)
	}
	cctx, ccancel := nsCtx("hangs")
	defer ccancel()
	_, err = keyvaluev1.NewKeyValueClient(conn).Get(cctx, &keyvaluev1.GetRequest{Key: "k"})
	wantCode(t, "Get while the plugin hangs in its handshake", err, codes.Unavailable)
}
