package backend

import (
	"context"
	"net/url"
)

// externalInstance is a server the user runs; the harness only checks that it
// answers.
type externalInstance struct {
	info   Info
	values map[string]any
	auth   *Credentials
}

func startExternal(ctx context.Context, kind Kind, o Options, reason string) (Instance, error) {
	e := &externalInstance{info: Info{Kind: kind, Provider: External, Reason: reason}}
	var target string
	switch kind {
	case Redis:
		if o.External.RedisAddr == "" {
			return nil, harnessErr("use external redis: no address (set %s)", EnvRedisAddr)
		}
		target, e.auth = o.External.RedisAddr, o.External.RedisAuth
		e.info.Address = target
		e.values = map[string]any{"address": target}
	case NATS:
		if o.External.NATSURL == "" {
			return nil, harnessErr("use external nats: no URL (set %s)", EnvNATSURL)
		}
		u, err := url.Parse(o.External.NATSURL)
		if err != nil || u.Host == "" {
			return nil, harnessErr("use external nats: invalid URL %q", o.External.NATSURL)
		}
		target, e.auth = o.External.NATSURL, o.External.NATSAuth
		e.info.Address = u.Host
		e.values = map[string]any{"url": o.External.NATSURL}
	}
	if err := e.auth.validate(kind); err != nil {
		return nil, harnessErr("use external %s: %w", kind, err)
	}
	o.Logf("backend: checking external %s at %s ...", kind, e.info.Address)
	v, err := waitReady(ctx, kind, target, e.auth, nil)
	if err != nil {
		return e, harnessErr("use external %s: %w", kind, err)
	}
	e.info.ServerVersion = v
	return e, nil
}

func (e *externalInstance) Info() Info { return e.info }

func (e *externalInstance) PluginConfig() (map[string]any, map[string]string) {
	values := make(map[string]any, len(e.values))
	for k, v := range e.values {
		values[k] = v
	}
	return values, e.auth.pluginCredentials(e.info.Kind)
}

// Close does nothing: the server is not the harness's.
func (e *externalInstance) Close(context.Context) error { return nil }
