package proxy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prism-suite/prism/backends/sdk"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// builtin is a Go driver linked into the proxy, by the name a plugin
// block's builtin field gives.
type builtin struct {
	name string
	new  func() sdk.Driver
	opts []sdk.ServerOption
}

// WithBuiltin links a Go driver into the proxy under name: a namespace
// whose plugin block says "builtin: name" is served by a fresh driver from
// newDriver, in the proxy's process, through the same SDK machinery a
// plugin process runs (sdk.Server: lifecycle states, validation, limits,
// error codes, decode rules, gRPC health) on an in-process channel. opts
// are the driver's server options (interceptors); the SDK's logger is the
// proxy's. prism-proxy links memstore, redis and nats.
func WithBuiltin(name string, newDriver func() sdk.Driver, opts ...sdk.ServerOption) Option {
	return func(p *Proxy) {
		if p.builtins == nil {
			p.builtins = map[string]*builtin{}
		}
		p.builtins[name] = &builtin{name: name, new: newDriver, opts: opts}
	}
}

// apply applies opts to p and returns the builtins they link.
func (p *Proxy) apply(opts []Option) map[string]*builtin {
	for _, o := range opts {
		o(p)
	}
	return p.builtins
}

// checkBuiltins returns an error naming every plugin block whose builtin is
// not linked into this proxy, with the names that are.
func (c Config) checkBuiltins(known map[string]*builtin) error {
	var errs []string
	for i, ns := range c.Namespaces {
		errs = append(errs, ns.checkBuiltins(fmt.Sprintf("namespaces[%d] (%s)", i, ns.Name), known)...)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// checkBuiltins names every plugin block of ns (at is where ns is) whose
// builtin is not in known; list names the known ones.
func (ns Namespace) checkBuiltins(at string, known map[string]*builtin) []string {
	pat, perr := ns.pattern()
	if perr != nil {
		return nil
	}
	slots, paths, err := ns.slots(pat)
	if err != nil {
		return nil
	}
	var errs []string
	seen := map[string]bool{}
	for _, s := range pat.Slots {
		spec, path := slots[s.Name], paths[s.Name]
		if spec == nil || spec.Builtin == "" || seen[path] {
			continue
		}
		seen[path] = true
		if known[spec.Builtin] == nil {
			errs = append(errs, fmt.Sprintf("%s%s.builtin: %q is not a driver linked into this proxy; known: %s", at, path, spec.Builtin, knownBuiltins(known)))
		}
	}
	return errs
}

// launchBuiltin starts a fresh driver of the host's builtin in process and
// takes it through the same Describe, capability check, Initialize and
// Start as a process.
func (h *host) launchBuiltin(ctx context.Context) (*live, error) {
	b := h.builtin
	log := h.log.With("builtin", b.name)
	srv := sdk.NewServer(b.new(), append([]sdk.ServerOption{sdk.WithLogger(log), sdk.WithTracing(h.tracing)}, b.opts...)...)
	conn := srv.InProcess()
	lc := lifecyclev1.NewLifecycleClient(conn)
	return h.bringUp(ctx, &live{conn: conn, lc: lc, builtin: true, started: time.Now()}, func() {
		sctx, cancel := context.WithTimeout(context.Background(), builtinStopTimeout)
		defer cancel()
		_, _ = lc.Stop(sctx, &lifecyclev1.StopRequest{})
	})
}

// builtinStopTimeout bounds how long a builtin's Stop (its driver's Close)
// may take when it is replaced or fails to start.
const builtinStopTimeout = 5 * time.Second

var _ sdk.Encoded = (*frame)(nil)

// knownBuiltins names the linked drivers for an error ("none" if none).
func knownBuiltins(known map[string]*builtin) string {
	if len(known) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(known)), ", ")
}
