package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// Start starts an instance of kind with opts (see [Options]; zero fields take
// their defaults). For [Memstore] it returns an instance with provider [None]
// and an empty config.
//
// When it fails after creating something, Start returns the partial instance
// together with the error, so the caller can Close it either way. Failures of
// the infrastructure (no daemon, an image that cannot be pulled, a server that
// does not become ready in time) are wrapped in a *[HarnessError].
func Start(ctx context.Context, kind Kind, opts Options) (Instance, error) {
	o := opts.WithDefaults()
	if o.Definition != nil && kind != Memstore {
		if Kind(o.Definition.Name) != kind {
			return nil, fmt.Errorf("start backend: kind %q is not the definition's name %q", kind, o.Definition.Name)
		}
		if o.Definition.Go == "" {
			return startDefinition(ctx, o.Definition, o)
		}
	}
	switch kind {
	case Memstore:
		return noInstance{}, nil
	case Redis, NATS:
	default:
		return nil, fmt.Errorf("start backend: unknown kind %q", kind)
	}
	if err := o.Auth.validate(kind); err != nil {
		return nil, fmt.Errorf("start %s: %w", kind, err)
	}

	provider, reason := o.Provider, "provider "+string(o.Provider)+" was requested"
	if provider == Auto {
		provider, reason = chooseProvider(ctx, kind, o)
		if provider == Embedded && kind == Redis && o.Auth.redisACLUser() {
			// miniredis has no real ACLs: with an admin user (auth specs), a
			// local redis-server serves better.
			if path, err := exec.LookPath(o.RedisServerPath); err == nil {
				provider, reason = Process, reason+"; but miniredis cannot manage ACL users, so process with "+path
			}
		}
		o.Logf("backend: auto chose %s for %s: %s", provider, kind, reason)
	}

	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	began := time.Now()
	var (
		inst Instance
		err  error
	)
	switch provider {
	case Container:
		inst, err = startContainer(ctx, kind, o, reason)
	case Process:
		inst, err = startProcess(ctx, kind, o, reason)
	case Embedded:
		inst, err = startEmbedded(ctx, kind, o, reason)
	case External:
		inst, err = startExternal(ctx, kind, o, reason)
	default:
		return nil, fmt.Errorf("start %s: unknown provider %q", kind, provider)
	}
	if err != nil {
		o.Logf("backend: %s %s did not start: %v", kind, provider, err)
		return inst, err
	}
	in := inst.Info()
	o.Logf("backend: %s %s ready at %s (%s) in %s", kind, provider, in.Address, in.ServerVersion,
		time.Since(began).Round(time.Millisecond))
	return inst, nil
}

// noInstance is the instance of a backend that needs none (memstore).
type noInstance struct{}

func (noInstance) Info() Info {
	return Info{Kind: Memstore, Provider: None, Reason: "memstore needs no backend instance"}
}

func (noInstance) PluginConfig() (map[string]any, map[string]string) {
	return map[string]any{}, map[string]string{}
}

func (noInstance) Close(context.Context) error { return nil }

// pluginConfig returns the config document a plugin of kind needs for addr.
func pluginConfig(kind Kind, addr string, auth *Credentials) (map[string]any, map[string]string) {
	values := map[string]any{}
	switch kind {
	case Redis:
		values["address"] = addr
	case NATS:
		values["url"] = "nats://" + addr
	}
	return values, auth.pluginCredentials(kind)
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// probe makes one attempt to reach a server of kind at addr and returns its
// version.
func probe(ctx context.Context, kind Kind, addr string, auth *Credentials) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	switch kind {
	case Redis:
		o := &redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, DialTimeout: time.Second,
			ContextTimeoutEnabled: true, DisableIdentity: true, Protocol: 2}
		if auth != nil {
			o.Username, o.Password = auth.Username, auth.Password
		}
		c := redis.NewClient(o)
		defer c.Close()
		if err := c.Ping(ctx).Err(); err != nil {
			return "", err
		}
		// Not every server answers INFO server (miniredis does not).
		info, err := c.Info(ctx, "server").Result()
		if v := redisVersion(info); err == nil && v != "" {
			return v, nil
		}
		return "unknown", nil
	case NATS:
		url := addr
		if !strings.Contains(url, "://") {
			url = "nats://" + addr
		}
		timeout := time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(dl), time.Millisecond)
		}
		nopts := []nats.Option{nats.Timeout(timeout), nats.NoReconnect(), nats.Name("prism-harness-probe")}
		if auth != nil {
			if auth.Token != "" {
				nopts = append(nopts, nats.Token(auth.Token))
			} else {
				nopts = append(nopts, nats.UserInfo(auth.Username, auth.Password))
			}
		}
		nc, err := nats.Connect(url, nopts...)
		if err != nil {
			return "", err
		}
		defer nc.Close()
		if err := nc.FlushWithContext(ctx); err != nil {
			return "", err
		}
		return nc.ConnectedServerVersion(), nil
	}
	return "", fmt.Errorf("probe: unknown kind %q", kind)
}

// waitReady polls addr until a server of kind answers, ctx ends, or exited
// (when not nil) is closed. It returns the server's version.
func waitReady(ctx context.Context, kind Kind, addr string, auth *Credentials, exited <-chan struct{}) (string, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		v, err := probe(ctx, kind, addr, auth)
		if err == nil {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for %s at %s: %w (last error: %v)", kind, addr, ctx.Err(), err)
		case <-exited:
			return "", fmt.Errorf("wait for %s at %s: server exited", kind, addr)
		case <-tick.C:
		}
	}
}

// redisVersion returns redis_version from the text of INFO server.
func redisVersion(info string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return ""
}

// moduleVersion returns "name version" of a module linked into this binary.
func moduleVersion(name, path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == path {
				return name + " " + m.Version
			}
		}
	}
	return name
}

// redisAuthArgs returns redis-server arguments that require auth.
func redisAuthArgs(auth *Credentials) []string {
	switch {
	case auth == nil:
		return nil
	case auth.redisACLUser():
		return []string{
			"--user", auth.Username, "on", ">" + auth.Password, "~*", "&*", "+@all",
			"--user", "default", "off",
		}
	default:
		return []string{"--requirepass", auth.Password}
	}
}

// natsAuthArgs returns nats-server arguments that require auth.
func natsAuthArgs(auth *Credentials) []string {
	switch {
	case auth == nil:
		return nil
	case auth.Token != "":
		return []string{"--auth", auth.Token}
	default:
		return []string{"--user", auth.Username, "--pass", auth.Password}
	}
}

// errClosed is returned by fault methods of a closed instance.
var errClosed = errors.New("instance is closed")
