package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/cluster"
	"github.com/prism-suite/prism/harness/nemesis"
)

func options(t *testing.T, p backend.Provider) backend.Options {
	t.Helper()
	o := backend.Options{Provider: p, StartTimeout: 90 * time.Second, Logf: t.Logf}
	switch p {
	case backend.Process:
		if _, err := exec.LookPath("redis-server"); err != nil {
			t.Skip("redis-server is not on PATH")
		}
		o.RedisServerPath = "redis-server"
		nats, _ := filepath.Abs("../../bin/nats-server")
		if v := os.Getenv(backend.EnvNATSServer); v != "" {
			nats = v
		}
		if _, err := os.Stat(nats); err != nil {
			t.Skip("no nats-server (go tool task build writes bin/nats-server)")
		}
		o.NATSServerPath = nats
	case backend.Container:
		if os.Getenv(backend.EnvRedisImage) == "" || os.Getenv(backend.EnvNATSImage) == "" {
			t.Skip("container clusters need PRISM_REDIS_IMAGE and PRISM_NATS_IMAGE (ci/images/build.sh)")
		}
	}
	return o
}

func start(t *testing.T, kind backend.Kind, p backend.Provider) cluster.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, kind, options(t, p))
	if err != nil {
		t.Fatalf("start %s cluster: %v", kind, err)
	}
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

func roles(t *testing.T, c cluster.Instance) map[string]int {
	t.Helper()
	nodes, err := c.Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, n := range nodes {
		out[n.Role]++
	}
	return out
}

// A key written through the cluster before its primary is killed is read
// back after the failover, the leader moved to another node, and the old
// primary rejoined.
func testRedis(t *testing.T, p backend.Provider) {
	c := start(t, backend.Redis, p)
	if got := roles(t, c); got["primary"] != 3 || got["replica"] != 3 {
		t.Fatalf("roles %v, want 3 primaries and 3 replicas", got)
	}
	values, _ := c.PluginConfig()
	addrs := values["addresses"].([]any)
	if len(addrs) != 6 {
		t.Fatalf("plugin config lists %d addresses, want 6", len(addrs))
	}
	var s []string
	for _, a := range addrs {
		s = append(s, a.(string))
	}
	rc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: s})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := rc.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	leader, err := c.Leader(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Wait(ctx, 1, time.Second).Result(); err != nil {
		t.Logf("wait: %v", err)
	}
	events, err := once(ctx, c, nemesis.Options{Kinds: []nemesis.Kind{nemesis.KillLeader}, LeaderKey: "a", Hold: 5 * time.Second})
	if len(events) != 1 {
		t.Fatalf("%d events, want 1: %v", len(events), err)
	}
	e := events[0]
	t.Logf("event %+v (recovered in %v)", e, e.RecoverTime())
	if e.Node != leader || e.Err != "" {
		t.Fatalf("event %+v, want a clean kill of %s", e, leader)
	}
	after, err := c.Leader(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if after == leader {
		t.Errorf("the primary of key a is still %s after it was killed for 5s", leader)
	}
	if got := roles(t, c); got["primary"] != 3 || got["replica"] != 3 {
		t.Errorf("roles after heal %v, want 3 primaries and 3 replicas", got)
	}
	if v, err := rc.Get(ctx, "a").Result(); err != nil || v != "v-a" {
		t.Errorf("get a after failover: %q, %v", v, err)
	}
	if f := c.Info().Cluster; f == nil || f.Nodes != 6 || f.Version == "" || f.Topology != "redis-cluster" {
		t.Errorf("cluster facts %+v, want 6 nodes of redis-cluster and a version", f)
	}
}

func testNATS(t *testing.T, p backend.Provider) {
	c := start(t, backend.NATS, p)
	values, _ := c.PluginConfig()
	nc, err := gonats.Connect(values["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	jsAsk(ctx, t, "create stream S", func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		return err
	})
	for i := range 10 {
		// A message ID makes an asked-again publish count once.
		jsAsk(ctx, t, fmt.Sprintf("publish %d", i), func(ctx context.Context) error {
			_, err := js.Publish(ctx, "s.x", []byte("m"), jetstream.WithMsgID(fmt.Sprint(i)))
			return err
		})
	}
	leader, err := c.Leader(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	// A topic names no stream: its stream is the only replicated message
	// stream (an object store's stream is none).
	jsAsk(ctx, t, "create object store B", func(ctx context.Context) error {
		_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "B", Replicas: 3})
		return err
	})
	if byTopic, err := c.Leader(ctx, "some.topic"); err != nil || byTopic != leader {
		t.Errorf("Leader of a topic: %q, %v; want stream S's leader %s", byTopic, err, leader)
	}
	jsAsk(ctx, t, "create stream T", func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
		return err
	})
	if _, err := c.Leader(ctx, "some.topic"); err == nil || !strings.Contains(err.Error(), "S, T") {
		t.Errorf("Leader of a topic with two streams: %v, want an error naming both", err)
	}
	jsAsk(ctx, t, "delete stream T", func(ctx context.Context) error {
		if err := js.DeleteStream(ctx, "T"); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
		return nil
	})
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	events, err := once(ctx, c, nemesis.Options{Kinds: []nemesis.Kind{nemesis.KillLeader}, LeaderKey: "S", Hold: 4 * time.Second})
	if len(events) != 1 {
		t.Fatalf("%d events, want 1: %v", len(events), err)
	}
	e := events[0]
	t.Logf("event %+v (recovered in %v)", e, e.RecoverTime())
	if e.Node != leader || e.Err != "" {
		t.Fatalf("event %+v, want a clean kill of %s", e, leader)
	}
	after, err := c.Leader(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	if after == leader {
		t.Errorf("stream S is still led by %s after it was killed", leader)
	}
	s, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	si, err := s.Info(ctx)
	if err != nil || si.State.Msgs != 10 {
		t.Errorf("stream after failover: %+v, %v; want 10 messages", si.State, err)
	}
}

// jsAsk makes one idempotent JetStream request, each attempt bounded at
// 15 s: a clustered server may take a request and never answer it (CI saw a
// stream create of 3 replicas go unanswered for 90 s), and a client asks
// again. An answer that is an error fails the test at once.
func jsAsk(ctx context.Context, t *testing.T, what string, ask func(context.Context) error) {
	t.Helper()
	for {
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := ask(actx)
		cancel()
		switch {
		case err == nil:
			return
		case !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, gonats.ErrTimeout), ctx.Err() != nil:
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: no answer within 15s; asking again", what)
	}
}

// once runs one fault of the schedule: the run ends when its first event is
// reported.
func once(ctx context.Context, c nemesis.Cluster, o nemesis.Options) ([]nemesis.Event, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return nemesis.Run(ctx, c, o, func(nemesis.Event) { cancel() })
}

func TestRedisProcess(t *testing.T) { testRedis(t, backend.Process) }
func TestNATSProcess(t *testing.T)  { testNATS(t, backend.Process) }

func TestRedisContainer(t *testing.T) { testRedis(t, backend.Container) }
func TestNATSContainer(t *testing.T)  { testNATS(t, backend.Container) }

func TestProcessCannotPartition(t *testing.T) {
	c := start(t, backend.NATS, backend.Process)
	if ok, why := c.Supports(nemesis.Partition); ok || why == "" {
		t.Fatalf("Supports(partition) = %v, %q; want false with a reason", ok, why)
	}
	if _, err := nemesis.Run(t.Context(), c, nemesis.Options{Kinds: []nemesis.Kind{nemesis.Partition}}, nil); err == nil {
		t.Fatal("nemesis.Run with a partition on a process cluster: no error")
	}
}

// A node cut off the network (a container cluster) is healed and the
// cluster is healthy again; the event says which node and when.
func TestPartitionContainer(t *testing.T) {
	for _, kind := range []backend.Kind{backend.Redis, backend.NATS} {
		t.Run(string(kind), func(t *testing.T) {
			c := start(t, kind, backend.Container)
			if ok, why := c.Supports(nemesis.Partition); !ok {
				t.Fatalf("a container cluster cannot be partitioned: %s", why)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			events, err := once(ctx, c, nemesis.Options{Kinds: []nemesis.Kind{nemesis.Partition}, Hold: 4 * time.Second})
			if len(events) != 1 || events[0].Err != "" || events[0].Recovered.IsZero() {
				t.Fatalf("events %+v, %v; want one clean partition, healed and recovered", events, err)
			}
			t.Logf("event %+v (recovered in %v)", events[0], events[0].RecoverTime())
		})
	}
}

// A node paused (SIGSTOP) longer than the failover timeout is resumed, and
// the cluster is healthy again.
func TestPauseProcess(t *testing.T) {
	for _, kind := range []backend.Kind{backend.Redis, backend.NATS} {
		t.Run(string(kind), func(t *testing.T) {
			c := start(t, kind, backend.Process)
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			events, err := once(ctx, c, nemesis.Options{Kinds: []nemesis.Kind{nemesis.Pause}, Hold: 4 * time.Second})
			if len(events) != 1 || events[0].Err != "" || events[0].Recovered.IsZero() {
				t.Fatalf("events %+v, %v; want one clean pause, resumed and recovered", events, err)
			}
			t.Logf("event %+v (recovered in %v)", events[0], events[0].RecoverTime())
		})
	}
}

// Zero options are filled from the environment as backend.Start fills them:
// the process provider runs the server binary PRISM_NATS_SERVER names.
func TestProcessHonoursServerEnv(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nats-server-of-env")
	t.Setenv(backend.EnvNATSServer, missing)
	_, err := cluster.Start(t.Context(), backend.NATS, backend.Options{Provider: backend.Process})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("start with %s=%s: %v, want an error naming that binary", backend.EnvNATSServer, missing, err)
	}
}
