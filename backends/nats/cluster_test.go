package nats_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prism-suite/prism/backends/nats"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/cluster"
)

// With the config of a 3-node cluster the plugin knows every server, says
// so in Describe, and its stream has 3 replicas.
func TestNATSCluster(t *testing.T) {
	server, _ := filepath.Abs("../../bin/nats-server")
	if v := os.Getenv(backend.EnvNATSServer); v != "" {
		server = v
	}
	if _, err := os.Stat(server); err != nil {
		t.Skip("no nats-server (go tool task build writes bin/nats-server)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, backend.NATS, backend.Options{Provider: backend.Process, NATSServerPath: server, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	values, _ := c.PluginConfig()
	d := nats.New()
	if err := d.Init(ctx, sdk.Config{Values: values}); err != nil {
		t.Fatalf("init with %v: %v", values, err)
	}
	defer d.Close(context.Background())
	info := d.Describe().Info
	if info["cluster_servers"] != "3" || info["stream_replicas"] != "3" {
		t.Errorf("Describe info %v, want cluster_servers 3 and stream_replicas 3", info)
	}
	nc, err := gonats.Connect(values["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, info["stream"])
	if err != nil {
		t.Fatalf("the plugin's stream %q: %v", info["stream"], err)
	}
	si, err := s.Info(ctx)
	if err != nil || si.Config.Replicas != 3 {
		t.Fatalf("stream %q: %d replicas, %v; want 3", info["stream"], si.Config.Replicas, err)
	}
}
