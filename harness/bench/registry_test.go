package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/harness/target"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/registry"
)

// TestMulticastSeriesEndsWhenInboxesCannotOpen: a multicast series whose
// inboxes cannot all open — 200 Receive streams on one connection to a
// proxy that allows 128 per connection, where grpc-go makes the 129th wait
// for a free stream without a deadline — ends with an error saying how
// many opened, by its open bound, instead of waiting for ever (the hang of
// the 10 000-receiver series).
func TestMulticastSeriesEndsWhenInboxesCannotOpen(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts prism-proxy")
	}
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "github.com/prism-suite/prism/reference/cmd/prism-proxy").CombinedOutput()
	if err != nil {
		t.Fatalf("build prism-proxy: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	po := hproxy.DefaultOptions()
	po.Binary = filepath.Join(dir, "prism-proxy")
	po.LogLevel = "warn"
	mem := hproxy.Slot{Builtin: "memstore"}
	px, err := hproxy.Start(ctx, po, hproxy.Namespace{Name: "mc", Patterns: []string{"registry"},
		Slots: map[string]hproxy.Slot{"registry": mem, "messaging": mem}, Registry: &registry.Config{}})
	if px != nil {
		t.Cleanup(func() { _ = px.Stop(context.Background()) })
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := px.WaitServing(ctx, "mc"); err != nil {
		t.Fatal(err)
	}
	conn, err := target.Dial(px.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := func(int) registryv1.RegistryClient {
		return target.Target{Via: target.Proxy, Namespace: "mc", Conn: conn}.Registry()
	}
	const n, within = 200, 3 * time.Second
	start := time.Now()
	_, _, err = multicastSeries(ctx, client, n, 1, time.Minute, within)
	took := time.Since(start)
	want := fmt.Sprintf("of %d inboxes within %v", n, within)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error saying how many %s", err, want)
	}
	if took > within+30*time.Second {
		t.Fatalf("the series ended after %v, long after its open bound of %v", took, within)
	}
	t.Logf("%v after %v", err, took)
}
