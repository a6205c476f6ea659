package proxy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/proxy"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	refproxy "github.com/prism-suite/prism/reference/proxy"
)

var bin string // folder with prism-proxy and prism-memstore, built by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "prism-harness-proxy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	out, err := exec.Command("go", "build", "-o", dir+"/",
		"github.com/prism-suite/prism/reference/cmd/prism-proxy",
		"github.com/prism-suite/prism/backends/memstore/cmd/prism-memstore").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func TestStartKillPluginStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := proxy.DefaultOptions()
	o.Binary = filepath.Join(bin, "prism-proxy")
	o.Dir = t.TempDir()
	memstore := filepath.Join(bin, "prism-memstore")
	p, cfg := startReadingConfig(t, ctx, o,
		proxy.Namespace{Name: "a", Plugin: memstore, Credentials: map[string]string{"token": "s3cret-value"}},
		proxy.Namespace{Name: "b", Plugin: memstore, Instance: "b"})
	if strings.Contains(string(cfg), "s3cret-value") || !strings.Contains(string(cfg), "file:") {
		t.Errorf("the config must reference credentials by file, never hold them:\n%s", cfg)
	}
	if err := p.WaitServing(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	nss := p.Namespaces()
	if len(nss) != 2 || nss[0].Name != "a" || nss[0].Credentials["token"] != "s3cret-value" || nss[1].Instance != "b" {
		t.Errorf("Namespaces: got %+v, want a (with its credentials) and b", nss)
	}
	nss[0].Credentials["token"] = "changed"
	if p.Namespaces()[0].Credentials["token"] != "s3cret-value" {
		t.Error("changing what Namespaces returned changed the proxy's namespaces")
	}
	if p.Options().Binary != o.Binary {
		t.Errorf("Options().Binary: got %q, want %q", p.Options().Binary, o.Binary)
	}
	for { // poll until the proxy has health-checked its plugin
		h, err := p.PluginHealth(ctx, "a")
		if err != nil {
			t.Fatalf("PluginHealth: %v", err)
		}
		if h == "healthy" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("PluginHealth: got %q, want healthy; stderr:\n%s", h, p.Stderr())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err := p.PluginHealth(ctx, "no-such-namespace"); err == nil {
		t.Error("PluginHealth of a namespace the proxy does not serve: got no error")
	}
	kv := p.Target("a").KeyValue()
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	pid, err := p.KillPlugin(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	_, err = kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Get right after the kill: got %v, want Unavailable", err)
	}
	for { // poll until the restarted plugin runs
		npid, err := p.PluginPID(ctx, "a")
		if err == nil && npid != pid {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no new plugin process after the kill (pid %d, %v); stderr:\n%s", npid, err, p.Stderr())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := p.WaitServing(ctx, "a"); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Errorf("Set after the restart: %v", err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Errorf("Stop: %v; stderr:\n%s", err, p.Stderr())
	}
	if code := p.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM: %d", code)
	}
}

func TestStartReportsABadConfig(t *testing.T) {
	o := proxy.DefaultOptions()
	o.Binary = filepath.Join(bin, "prism-proxy")
	p, err := proxy.Start(context.Background(), o, proxy.Namespace{Name: "a", Plugin: "/no/such/plugin"})
	defer p.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "namespaces[0] (a).plugin.binary") {
		t.Errorf("Start: got %v, want the proxy's config error naming namespaces[0] (a).plugin.binary", err)
	}
}

// TestLimitsAreWritten: Options.Limits becomes the config's limits: section,
// which the proxy accepts.
func TestLimitsAreWritten(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := proxy.DefaultOptions()
	o.Binary = filepath.Join(bin, "prism-proxy")
	o.Dir = t.TempDir()
	lim := refproxy.DefaultLimits()
	lim.MaxConcurrentStreams, lim.MaxInFlight = 1024, 40000
	o.Limits = &lim
	_, cfg := startReadingConfig(t, ctx, o, proxy.Namespace{Name: "a", Plugin: filepath.Join(bin, "prism-memstore")})
	for _, want := range []string{"max_concurrent_streams: 1024", "max_in_flight: 40000"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
}

// startReadingConfig starts a proxy (stopped when the test ends) and returns
// it with the config file the harness wrote for it.
func startReadingConfig(t *testing.T, ctx context.Context, o proxy.Options, nss ...proxy.Namespace) (*proxy.Proxy, []byte) {
	t.Helper()
	p, err := proxy.Start(ctx, o, nss...)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	cfg, err := os.ReadFile(p.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	return p, cfg
}
