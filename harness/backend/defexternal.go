package backend

import (
	"context"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prism-suite/prism/harness/backend/definition"
)

// defExternal is an instance the user runs, located by the environment
// variables a definition names. The harness checks that its address accepts
// TCP connections and never stops it.
type defExternal struct {
	def  *definition.Definition
	info Info
	auth *Credentials
}

func (s *defStart) startExternal(ctx context.Context) (Instance, error) {
	e := s.def.External
	raw := os.Getenv(e.AddressEnv)
	if raw == "" {
		return nil, s.fail("no address: set %s (host:port)", e.AddressEnv)
	}
	addr := raw
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil || u.Port() == "" {
			return nil, s.fail("%s=%q is not host:port or a URL with a host and port", e.AddressEnv, raw)
		}
		addr = u.Host
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, s.fail("%s=%q is not host:port or a URL with a host and port", e.AddressEnv, raw)
	}
	x := &defExternal{def: s.def, info: Info{Kind: s.kind, Provider: External, Address: addr, Reason: s.reason, File: s.def.File}}
	get := func(k string) string {
		if k == "" {
			return ""
		}
		return os.Getenv(k)
	}
	if c := (Credentials{Username: get(e.UserEnv), Password: get(e.PasswordEnv), Token: get(e.TokenEnv)}); c != (Credentials{}) {
		x.auth = &c
	}
	s.o.Logf("backend: checking external %s at %s ...", s.kind, addr)
	for {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-ctx.Done():
			return nil, s.fail("waited for %s (from %s) to accept connections: %v", addr, e.AddressEnv, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	x.info.ServerVersion = "unknown"
	if v := e.Version; v != nil {
		host, port, _ := net.SplitHostPort(addr)
		vars := credVars(x.auth)
		vars["host"], vars["port"], vars["addr"] = host, port, addr
		cmd, _ := definition.RenderAll(v.Exec, vars)
		vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		code, out, err := localRun(vctx, cmd)
		cancel()
		if err == nil && code == 0 {
			x.info.ServerVersion = pickVersion(v, out)
		}
	}
	return x, nil
}

func (x *defExternal) Info() Info { return x.info }

func (x *defExternal) PluginConfig() (map[string]any, map[string]string) {
	return definedConfig(x.def, x.info.Address, x.auth, nil)
}

// Close does nothing: the server is not the harness's.
func (x *defExternal) Close(context.Context) error { return nil }
