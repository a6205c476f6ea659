package redis_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/cluster"
)

// On a Redis Cluster (3 primaries, 3 replicas, as processes) keys land in
// every slot range: a batch read spans slots, and a scan and a count see
// the keys of every primary.
func TestRedisCluster(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, backend.Redis, backend.Options{Provider: backend.Process, RedisServerPath: "redis-server", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	values, _ := c.PluginConfig()
	d := redis.New()
	if err := d.Init(ctx, sdk.Config{Values: values}); err != nil {
		t.Fatalf("init with %v: %v", values, err)
	}
	defer d.Close(context.Background())
	if got := d.Describe().Info["cluster_nodes"]; got != "6" {
		t.Errorf("Describe info cluster_nodes = %q, want 6", got)
	}
	const n = 60
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("p/k%02d", i)
		if err := d.Set(ctx, keys[i], []byte(keys[i])); err != nil {
			t.Fatal(err)
		}
	}
	got, found, err := d.BatchGet(ctx, append(keys, "p/missing"))
	if err != nil {
		t.Fatalf("batch get across slots: %v", err)
	}
	for i, k := range keys {
		if !found[i] || string(got[i]) != k {
			t.Fatalf("batch get %s = %q, %v", k, got[i], found[i])
		}
	}
	if found[n] {
		t.Error("batch get found a missing key")
	}
	count, err := d.Count(ctx, "p/")
	if err != nil || count != n {
		t.Errorf("count = %d, %v; want %d (keys of every primary)", count, err, n)
	}
	seen := 0
	for cursor := ""; ; {
		page, next, err := d.Scan(ctx, "p/", cursor, 7, false)
		if err != nil {
			t.Fatal(err)
		}
		seen += len(page)
		if next == "" {
			break
		}
		cursor = next
	}
	if seen != n {
		t.Errorf("scan saw %d keys, want %d", seen, n)
	}
}
