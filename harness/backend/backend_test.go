package backend_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/prism-suite/prism/harness/backend"
)

// options returns the default options for provider, logging to t.
func options(t *testing.T, provider backend.Provider) backend.Options {
	o := backend.DefaultOptions()
	o.Provider = provider
	o.Logf = t.Logf
	o.StartTimeout = 30 * time.Second
	// Tests never pull: the only network they use is loopback.
	o.NoPull = true
	return o
}

// requireProvider skips t when provider cannot provide kind on this machine.
func requireProvider(t *testing.T, kind backend.Kind, provider backend.Provider) {
	t.Helper()
	o := backend.DefaultOptions()
	switch provider {
	case backend.Process:
		bin, env := o.RedisServerPath, backend.EnvRedisServer
		if kind == backend.NATS {
			bin, env = o.NATSServerPath, backend.EnvNATSServer
		}
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("process provider: %v (install it or set %s)", err, env)
		}
	case backend.Container:
		cli := dockerClient(t)
		image, env := o.RedisImage, backend.EnvRedisImage
		if kind == backend.NATS {
			image, env = o.NATSImage, backend.EnvNATSImage
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := cli.ImageInspect(ctx, image); err != nil {
			t.Skipf("container provider: image %s is not present (run ci/images/build.sh and set %s): %v", image, env, err)
		}
	}
}

// dockerClient returns a client of a Docker daemon that answers, or skips t.
func dockerClient(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Skipf("container provider: no docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		t.Skipf("container provider: docker daemon does not answer: %v", err)
	}
	return cli
}

// start starts kind with o and registers Close.
func start(t *testing.T, kind backend.Kind, o backend.Options) backend.Instance {
	t.Helper()
	began := time.Now()
	inst, err := backend.Start(context.Background(), kind, o)
	if inst != nil {
		t.Cleanup(func() { inst.Close(context.Background()) })
	}
	if err != nil {
		t.Fatalf("Start(%s, %s): %v", kind, o.Provider, err)
	}
	t.Logf("started %s %s in %s: %+v", kind, o.Provider, time.Since(began).Round(time.Millisecond), inst.Info())
	return inst
}

func checkInfo(t *testing.T, inst backend.Instance, kind backend.Kind, provider backend.Provider) {
	t.Helper()
	in := inst.Info()
	if in.Kind != kind || in.Provider != provider {
		t.Errorf("Info: got kind %q provider %q, want %q %q", in.Kind, in.Provider, kind, provider)
	}
	host, port, err := net.SplitHostPort(in.Address)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Errorf("Info.Address: got %q, want 127.0.0.1:<port>", in.Address)
	}
	if in.ServerVersion == "" {
		t.Error("Info.ServerVersion is empty")
	}
	if in.Reason == "" {
		t.Error("Info.Reason is empty")
	}
	if provider == backend.Container && (in.Image == "" || !strings.HasPrefix(in.ImageID, "sha256:")) {
		t.Errorf("Info: got image %q id %q, want an image and its sha256 id", in.Image, in.ImageID)
	}
	values, _ := inst.PluginConfig()
	switch kind {
	case backend.Redis:
		if values["address"] != in.Address {
			t.Errorf("PluginConfig address: got %v, want %s", values["address"], in.Address)
		}
	case backend.NATS:
		if values["url"] != "nats://"+in.Address {
			t.Errorf("PluginConfig url: got %v, want nats://%s", values["url"], in.Address)
		}
	}
}

// redisClient connects to inst the way a plugin would, from PluginConfig.
func redisClient(t *testing.T, inst backend.Instance) *redis.Client {
	t.Helper()
	values, creds := inst.PluginConfig()
	c := redis.NewClient(&redis.Options{
		Addr: values["address"].(string), Username: creds["username"], Password: creds["password"],
		// Without it go-redis ignores context deadlines on the socket.
		ContextTimeoutEnabled: true, DisableIdentity: true, Protocol: 2,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// natsConn connects to inst the way a plugin would, from PluginConfig.
func natsConn(t *testing.T, inst backend.Instance, extra ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	values, creds := inst.PluginConfig()
	opts := append([]nats.Option{nats.Timeout(2 * time.Second)}, extra...)
	if creds["token"] != "" {
		opts = append(opts, nats.Token(creds["token"]))
	}
	if creds["user"] != "" {
		opts = append(opts, nats.UserInfo(creds["user"], creds["password"]))
	}
	nc, err := nats.Connect(values["url"].(string), opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// timedOut reports whether err is what a request that hit its deadline gets.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// containerByPort returns the ID of the harness container publishing port,
// or "".
func containerByPort(t *testing.T, cli *client.Client, address string) string {
	t.Helper()
	_, p, _ := net.SplitHostPort(address)
	port, _ := strconv.Atoi(p)
	list, err := cli.ContainerList(ctxTimeout(t, 5*time.Second), client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", backend.LabelHarness+"=true"),
	})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	for _, c := range list.Items {
		for _, cp := range c.Ports {
			if int(cp.PublicPort) == port {
				return c.ID
			}
		}
	}
	return ""
}

var providers = []backend.Provider{backend.Embedded, backend.Process, backend.Container}

// TestProviders runs every kind on every provider this machine has: write and
// read back, outage, pause, close.
func TestProviders(t *testing.T) {
	for _, kind := range []backend.Kind{backend.Redis, backend.NATS} {
		for _, provider := range providers {
			t.Run(string(kind)+"/"+string(provider), func(t *testing.T) {
				requireProvider(t, kind, provider)
				t.Parallel()
				var cli *client.Client
				if provider == backend.Container {
					cli = dockerClient(t)
				}
				inst := start(t, kind, options(t, provider))
				checkInfo(t, inst, kind, provider)
				var id string
				if cli != nil {
					if id = containerByPort(t, cli, inst.Info().Address); id == "" {
						t.Fatalf("no container labelled %s publishes %s", backend.LabelHarness, inst.Info().Address)
					}
				}

				if kind == backend.Redis {
					exerciseRedis(t, inst)
				} else {
					exerciseNATS(t, inst)
				}

				if err := inst.Close(context.Background()); err != nil {
					t.Fatalf("Close: %v", err)
				}
				if err := inst.Close(context.Background()); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				if cli != nil {
					_, err := cli.ContainerInspect(ctxTimeout(t, 5*time.Second), id, client.ContainerInspectOptions{})
					if err == nil {
						t.Errorf("container %.12s is still there after Close", id)
					}
				}
				if _, err := backendProbe(kind, inst); err == nil {
					t.Errorf("%s still answers at %s after Close", kind, inst.Info().Address)
				}
			})
		}
	}
}

// backendProbe makes one short attempt to reach inst.
func backendProbe(kind backend.Kind, inst backend.Instance) (string, error) {
	values, _ := inst.PluginConfig()
	if kind == backend.Redis {
		c := redis.NewClient(&redis.Options{Addr: values["address"].(string), MaxRetries: -1,
			ContextTimeoutEnabled: true, DisableIdentity: true, Protocol: 2})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return c.Ping(ctx).Result()
	}
	nc, err := nats.Connect(values["url"].(string), nats.Timeout(300*time.Millisecond))
	if err != nil {
		return "", err
	}
	nc.Close()
	return "connected", nil
}

func exerciseRedis(t *testing.T, inst backend.Instance) {
	c := redisClient(t, inst)
	ctx := ctxTimeout(t, 20*time.Second)
	if err := c.Set(ctx, "prism:k", "v1", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "prism:k").Result(); err != nil || got != "v1" {
		t.Fatalf("GET: got %q, %v; want v1", got, err)
	}

	if o, ok := inst.(backend.Outager); ok {
		began := time.Now()
		if err := o.Down(ctx); err != nil {
			t.Fatalf("Down: %v", err)
		}
		t.Logf("down in %s", time.Since(began).Round(time.Millisecond))
		if _, err := backendProbe(backend.Redis, inst); err == nil {
			t.Error("PING succeeded while down")
		}
		began = time.Now()
		if err := o.Up(ctx); err != nil {
			t.Fatalf("Up: %v", err)
		}
		t.Logf("up in %s", time.Since(began).Round(time.Millisecond))
		got, err := c.Get(ctx, "prism:k").Result()
		switch {
		case o.Persistent() && (err != nil || got != "v1"):
			t.Errorf("GET after outage: got %q, %v; want v1 (Persistent)", got, err)
		case !o.Persistent() && err != nil && !errors.Is(err, redis.Nil):
			t.Errorf("GET after outage: %v", err)
		}
	} else {
		t.Logf("%s does not implement Outager", inst.Info().Provider)
	}

	if p, ok := inst.(backend.Pauser); ok {
		if err := p.Pause(ctx); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		began := time.Now()
		err := c.Ping(short).Err()
		cancel()
		if d := time.Since(began); !timedOut(err) || d > 2*time.Second {
			t.Errorf("PING while paused: got %v after %s, want a timeout after 300ms", err, d)
		}
		if err := p.Unpause(ctx); err != nil {
			t.Fatalf("Unpause: %v", err)
		}
		if got, err := c.Get(ctx, "prism:k").Result(); err != nil || got != "v1" {
			t.Errorf("GET after Unpause: got %q, %v; want v1", got, err)
		}
	} else {
		t.Logf("%s does not implement Pauser", inst.Info().Provider)
	}
}

func exerciseNATS(t *testing.T, inst backend.Instance) {
	ctx := ctxTimeout(t, 20*time.Second)
	nc, err := natsConn(t, inst)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	// Core request/reply through the server.
	sub, err := nc.Subscribe("prism.echo", func(m *nats.Msg) { m.Respond(m.Data) })
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if reply, err := nc.Request("prism.echo", []byte("ping"), 2*time.Second); err != nil || string(reply.Data) != "ping" {
		t.Fatalf("request: got %v, %v; want ping", reply, err)
	}
	sub.Unsubscribe()
	// A JetStream message, for persistence across an outage.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PRISM", Subjects: []string{"prism.s.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "prism.s.a", []byte("v1")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	nc.Close()

	if o, ok := inst.(backend.Outager); ok {
		began := time.Now()
		if err := o.Down(ctx); err != nil {
			t.Fatalf("Down: %v", err)
		}
		t.Logf("down in %s", time.Since(began).Round(time.Millisecond))
		if _, err := backendProbe(backend.NATS, inst); err == nil {
			t.Error("connect succeeded while down")
		}
		began = time.Now()
		if err := o.Up(ctx); err != nil {
			t.Fatalf("Up: %v", err)
		}
		t.Logf("up in %s", time.Since(began).Round(time.Millisecond))
		nc, err := natsConn(t, inst)
		if err != nil {
			t.Fatalf("connect after Up: %v", err)
		}
		js, _ := jetstream.New(nc)
		if o.Persistent() {
			// JetStream recovers its streams shortly after the server accepts
			// connections: poll until the deadline.
			var got []byte
			for {
				s, err := js.Stream(ctx, "PRISM")
				if err == nil {
					var m *jetstream.RawStreamMsg
					if m, err = s.GetMsg(ctx, 1); err == nil {
						got = m.Data
						break
					}
				}
				if ctx.Err() != nil {
					t.Fatalf("get message after outage: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if string(got) != "v1" {
				t.Errorf("message after outage: got %q, want v1 (Persistent)", got)
			}
		}
		nc.Close()
	} else {
		t.Logf("%s does not implement Outager", inst.Info().Provider)
	}

	if p, ok := inst.(backend.Pauser); ok {
		nc, err := natsConn(t, inst)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if err := p.Pause(ctx); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		began := time.Now()
		err = nc.FlushWithContext(short)
		cancel()
		if d := time.Since(began); !timedOut(err) || d > 2*time.Second {
			t.Errorf("flush while paused: got %v after %s, want a timeout after 300ms", err, d)
		}
		if err := p.Unpause(ctx); err != nil {
			t.Fatalf("Unpause: %v", err)
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			t.Errorf("flush after Unpause: %v", err)
		}
	} else {
		t.Logf("%s does not implement Pauser", inst.Info().Provider)
	}
}

// TestAuth starts servers that require credentials and checks that a client
// needs the ones PluginConfig hands out.
func TestAuth(t *testing.T) {
	cases := []struct {
		name string
		kind backend.Kind
		auth backend.Credentials
	}{
		{"redis-requirepass", backend.Redis, backend.Credentials{Password: "s3cret"}},
		{"redis-acl-user", backend.Redis, backend.Credentials{Username: "prism", Password: "s3cret"}},
		{"nats-user", backend.NATS, backend.Credentials{Username: "prism", Password: "s3cret"}},
		{"nats-token", backend.NATS, backend.Credentials{Token: "t0ken"}},
	}
	for _, provider := range providers {
		for _, tc := range cases {
			t.Run(string(provider)+"/"+tc.name, func(t *testing.T) {
				requireProvider(t, tc.kind, provider)
				t.Parallel()
				o := options(t, provider)
				auth := tc.auth
				o.Auth = &auth
				inst := start(t, tc.kind, o)
				auth.Password = "changed" // Start must have copied the credentials
				values, creds := inst.PluginConfig()
				if len(creds) == 0 {
					t.Fatal("PluginConfig returned no credentials")
				}
				if _, err := backendProbe(tc.kind, inst); err == nil {
					t.Errorf("a client without credentials got in")
				}
				if tc.kind == backend.Redis {
					if creds["password"] != "s3cret" || creds["username"] != tc.auth.Username {
						t.Errorf("credentials: got %v", creds)
					}
					if err := redisClient(t, inst).Ping(ctxTimeout(t, 5*time.Second)).Err(); err != nil {
						t.Errorf("PING with credentials: %v", err)
					}
				} else {
					if _, err := natsConn(t, inst); err != nil {
						t.Errorf("connect with credentials %v to %v: %v", creds, values, err)
					}
				}
			})
		}
	}
}

// TestEmbeddedRedisTTL checks that TTLs of the embedded Redis follow the wall
// clock.
func TestEmbeddedRedisTTL(t *testing.T) {
	t.Parallel()
	inst := start(t, backend.Redis, options(t, backend.Embedded))
	c := redisClient(t, inst)
	ctx := ctxTimeout(t, 10*time.Second)
	if err := c.Set(ctx, "prism:ttl", "v", 200*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := c.Exists(ctx, "prism:ttl").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("key with a 200ms TTL still exists")
		case <-tick.C:
		}
	}
	if d := time.Since(began); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("key with a 200ms TTL expired after %s", d)
	}
}

// TestExternal points the external provider at a server the test runs.
func TestExternal(t *testing.T) {
	t.Parallel()
	for _, kind := range []backend.Kind{backend.Redis, backend.NATS} {
		t.Run(string(kind), func(t *testing.T) {
			server := start(t, kind, options(t, backend.Embedded))
			o := options(t, backend.External)
			if kind == backend.Redis {
				o.External.RedisAddr = server.Info().Address
			} else {
				o.External.NATSURL = "nats://" + server.Info().Address
			}
			ext := start(t, kind, o)
			checkInfo(t, ext, kind, backend.External)
			if _, ok := ext.(backend.Outager); ok {
				t.Error("an external instance implements Outager")
			}
			if err := ext.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, err := backendProbe(kind, server); err != nil {
				t.Errorf("Close of an external instance stopped its server: %v", err)
			}
		})
	}
	t.Run("missing-address", func(t *testing.T) {
		if os.Getenv(backend.EnvRedisAddr) != "" {
			t.Skipf("%s is set", backend.EnvRedisAddr)
		}
		o := options(t, backend.External)
		o.External = backend.ExternalConfig{}
		_, err := backend.Start(context.Background(), backend.Redis, o)
		var he *backend.HarnessError
		if !errors.As(err, &he) {
			t.Fatalf("got %v, want a *HarnessError", err)
		}
	})
}

// TestAuto checks that auto chooses in bounded time and says why.
func TestAuto(t *testing.T) {
	t.Parallel()
	for _, kind := range []backend.Kind{backend.Redis, backend.NATS} {
		t.Run(string(kind), func(t *testing.T) {
			began := time.Now()
			inst := start(t, kind, options(t, backend.Auto))
			in := inst.Info()
			if in.Reason == "" {
				t.Error("Info.Reason is empty")
			}
			if in.Provider != backend.Container && in.Provider != backend.Embedded {
				t.Errorf("auto chose %q, want container or embedded", in.Provider)
			}
			t.Logf("auto chose %s in %s: %s", in.Provider, time.Since(began).Round(time.Millisecond), in.Reason)
		})
	}
	t.Run("missing-image", func(t *testing.T) {
		dockerClient(t)
		o := options(t, backend.Auto)
		o.RedisImage = "prism-offline/no-such-image:0"
		began := time.Now()
		inst := start(t, backend.Redis, o)
		if d := time.Since(began); d > 15*time.Second {
			t.Errorf("auto took %s to decide", d)
		}
		in := inst.Info()
		if in.Provider == backend.Container {
			t.Skipf("the image was pulled: %s", in.Reason)
		}
		if in.Provider != backend.Embedded || !strings.Contains(in.Reason, "no-such-image") {
			t.Errorf("got %s (%s), want embedded with a reason naming the image", in.Provider, in.Reason)
		}
	})
}

// TestMissingImage checks that a container whose image is not there fails
// quickly with a harness error.
func TestMissingImage(t *testing.T) {
	dockerClient(t)
	t.Parallel()
	o := options(t, backend.Container)
	o.StartTimeout = 20 * time.Second
	o.NATSImage = "prism-offline/no-such-image:0"
	began := time.Now()
	inst, err := backend.Start(context.Background(), backend.NATS, o)
	if inst != nil {
		inst.Close(context.Background())
	}
	var he *backend.HarnessError
	if !errors.As(err, &he) {
		t.Fatalf("got %v, want a *HarnessError", err)
	}
	if d := time.Since(began); d > 21*time.Second {
		t.Errorf("took %s to fail", d)
	}
	t.Logf("failed in %s: %v", time.Since(began).Round(time.Millisecond), err)
}

func TestMemstore(t *testing.T) {
	inst, err := backend.Start(context.Background(), backend.Memstore, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	values, creds := inst.PluginConfig()
	if in := inst.Info(); in.Provider != backend.None || in.Kind != backend.Memstore || len(values) != 0 || len(creds) != 0 {
		t.Errorf("got %+v %v %v, want provider none and an empty config", in, values, creds)
	}
	if err := inst.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestDefaultOptions(t *testing.T) {
	t.Setenv(backend.EnvRedisImage, "example/redis:1")
	t.Setenv(backend.EnvNATSToken, "tok")
	t.Setenv(backend.EnvNATSUser, "")
	t.Setenv(backend.EnvNATSPassword, "")
	o := backend.DefaultOptions()
	if o.Provider != backend.Auto || o.RedisImage != "example/redis:1" || o.StartTimeout != 60*time.Second {
		t.Errorf("got %+v", o)
	}
	if o.External.NATSAuth == nil || o.External.NATSAuth.Token != "tok" {
		t.Errorf("External.NATSAuth: got %+v, want token tok", o.External.NATSAuth)
	}
	if _, err := backend.Start(context.Background(), "nope", o); err == nil {
		t.Error("Start of an unknown kind succeeded")
	}
	bad := options(t, backend.Embedded)
	bad.Auth = &backend.Credentials{Username: "u"}
	if _, err := backend.Start(context.Background(), backend.NATS, bad); err == nil {
		t.Error("Start with NATS credentials lacking a password succeeded")
	}
}

// TestSweep checks that Sweep removes the containers of this process. It does
// not run in parallel: it would remove the containers of other tests.
func TestSweep(t *testing.T) {
	requireProvider(t, backend.Redis, backend.Container)
	cli := dockerClient(t)
	inst := start(t, backend.Redis, options(t, backend.Container))
	id := containerByPort(t, cli, inst.Info().Address)
	n, err := backend.Sweep(context.Background())
	if err != nil || n < 1 {
		t.Fatalf("Sweep: got %d, %v; want at least 1", n, err)
	}
	if _, err := cli.ContainerInspect(ctxTimeout(t, 5*time.Second), id, client.ContainerInspectOptions{}); err == nil {
		t.Errorf("container %.12s is still there after Sweep", id)
	}
	if err := inst.Close(context.Background()); err != nil {
		t.Errorf("Close after Sweep: %v", err)
	}
}

// ExampleStart starts an embedded Redis and prints what a report records.
func ExampleStart() {
	opts := backend.DefaultOptions()
	opts.Provider = backend.Embedded
	opts.Logf = nil
	inst, err := backend.Start(context.Background(), backend.Redis, opts)
	if inst != nil {
		defer inst.Close(context.Background())
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	values, _ := inst.PluginConfig()
	info := inst.Info()
	fmt.Println(info.Kind, info.Provider, values["address"] == info.Address)
	// Output: redis embedded true
}
