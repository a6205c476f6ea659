package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/plugin"
	hproxy "github.com/prism-suite/prism/harness/proxy"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"google.golang.org/protobuf/types/known/structpb"
)

// redisPoolSize is the redis plugin's pool_size in the benchmark, so that
// 64 clients are not held back by the plugin's default pool of 10.
const redisPoolSize = 64

// redisSetup is the redis side of a run: the server, a go-redis client on
// it, and a redis plugin process talking to it.
type redisSetup struct {
	inst   backend.Instance
	rdb    *redis.Client
	plugin *plugin.Process
	config map[string]any
	creds  map[string]string
}

// startRedis starts a Redis instance (provider o.RedisProvider) and the
// redis plugin against it. It returns nil, nil when o.Redis is not built.
func startRedis(ctx context.Context, o Options, logf func(string, ...any)) (*redisSetup, error) {
	if o.Redis == "" {
		return nil, nil
	}
	if _, err := os.Stat(o.Redis); err != nil {
		logf("redis plugin %s not found: skipping the redis series", o.Redis)
		return nil, nil
	}
	bo := backend.DefaultOptions()
	bo.Provider = o.RedisProvider
	bo.Logf = func(string, ...any) {}
	inst, err := backend.Start(ctx, backend.Redis, bo)
	if err != nil {
		if inst != nil {
			_ = inst.Close(ctx)
		}
		return nil, fmt.Errorf("start redis: %w", err)
	}
	info := inst.Info()
	logf("redis: %s %s at %s", info.Provider, info.ServerVersion, info.Address)
	values, creds := inst.PluginConfig()
	values["pool_size"] = redisPoolSize
	r := &redisSetup{inst: inst, config: values, creds: creds}
	ro := &redis.Options{Addr: info.Address, PoolSize: 1000, MaxRetries: -1, DisableIdentity: true}
	if u, ok := creds["username"]; ok {
		ro.Username = u
	}
	if pw, ok := creds["password"]; ok {
		ro.Password = pw
	}
	r.rdb = redis.NewClient(ro)
	r.plugin, err = plugin.Launch(ctx, o.Redis, plugin.DefaultOptions())
	if err != nil {
		r.close(ctx)
		return nil, fmt.Errorf("launch %s: %w", o.Redis, err)
	}
	cfg, err := structpb.NewStruct(values)
	if err != nil {
		r.close(ctx)
		return nil, fmt.Errorf("encode redis config: %w", err)
	}
	if _, err := r.plugin.Setup(ctx, &lifecyclev1.InitializeRequest{Config: cfg, Credentials: creds}); err != nil {
		r.close(ctx)
		return nil, fmt.Errorf("set up redis plugin: %w", err)
	}
	return r, nil
}

func (r *redisSetup) close(ctx context.Context) {
	if r.plugin != nil {
		_ = r.plugin.Stop(ctx)
	}
	if r.rdb != nil {
		_ = r.rdb.Close()
	}
	_ = r.inst.Close(ctx)
}

// RedisDirect measures GET and SET with go-redis straight to the server:
// the baseline of the redis series.
func RedisDirect(ctx context.Context, name, prefix string, rdb *redis.Client, conc, total int, d time.Duration) (get, set Result) {
	value := make([]byte, ValueSize)
	key := func(i int) string { return fmt.Sprintf("%s%04d", prefix, (i%keySpace+keySpace)%keySpace) }
	set = Load(ctx, name+" Set", conc, total, d, func(ctx context.Context, _, i int) error {
		return rdb.Set(ctx, key(i), value, 0).Err()
	})
	get = Load(ctx, name+" Get", conc, total, d, func(ctx context.Context, _, i int) error {
		return rdb.Get(ctx, key(i)).Err()
	})
	return get, set
}

// startProxy starts prism-proxy with a namespace per plugin: "memstore", and
// "redis" when r is not nil; with o.Builtin also the same drivers linked
// into the proxy, "memstore-builtin" and "redis-builtin".
func startProxy(ctx context.Context, o Options, r *redisSetup) (*hproxy.Proxy, error) {
	if o.Proxy == "" {
		return nil, nil
	}
	if _, err := os.Stat(o.Proxy); err != nil {
		return nil, fmt.Errorf("start proxy: %w (build it with go build -o bin/ ./reference/cmd/...)", err)
	}
	nss := []hproxy.Namespace{{Name: "memstore", Plugin: o.Memstore}}
	if r != nil {
		nss = append(nss, hproxy.Namespace{Name: "redis", Plugin: o.Redis, Config: r.config, Credentials: r.creds})
	}
	if o.Builtin {
		nss = append(nss, hproxy.Namespace{Name: "memstore-builtin", Builtin: "memstore"})
		if r != nil {
			nss = append(nss, hproxy.Namespace{Name: "redis-builtin", Builtin: "redis", Config: r.config, Credentials: r.creds})
		}
	}
	return startServing(ctx, proxyOptions(o), nss...)
}

// proxyOptions are the options every proxy of the bench starts with:
// o.Proxy, warnings only, health checks every 5 s.
func proxyOptions(o Options) hproxy.Options {
	po := hproxy.DefaultOptions()
	po.Binary = o.Proxy
	po.LogLevel = "warn"
	po.HealthInterval = 5 * time.Second
	return po
}

// startServing starts prism-proxy with nss and waits until each serves;
// on an error the proxy is stopped.
func startServing(ctx context.Context, po hproxy.Options, nss ...hproxy.Namespace) (*hproxy.Proxy, error) {
	px, err := hproxy.Start(ctx, po, nss...)
	if err != nil {
		if px != nil {
			_ = px.Stop(ctx)
		}
		return nil, err
	}
	for _, n := range nss {
		if err := px.WaitServing(ctx, n.Name); err != nil {
			_ = px.Stop(ctx)
			return nil, err
		}
	}
	return px, nil
}
