package proxy_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"google.golang.org/grpc/codes"
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
