package proxy

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Live reconfiguration. The routing table (routes) is immutable and
// replaced whole, so a call routes on one version of it. A change builds
// the new namespace first (plan: its hosts resolved by identity, new hosts
// made but not started) and then publishes it (commit) under p.mu:
//
//   - a call already routed keeps the namespace and plugin connection it
//     got, so calls in flight on a replaced or removed namespace finish on
//     the old config, and new calls use the new one;
//   - a plugin block identical to a running one (same identity) shares its
//     host, as in the config file; a new one gets a new host, started at
//     once when the proxy serves;
//   - a host that no namespace uses any more is stopped (drained) once its
//     calls in flight have finished, or after drain_timeout;
//   - a removed namespace answers NotFound.
//
// A change that fails validation never reaches plan; plan fails before
// anything is published, so nothing is half-applied.

// Namespace sources.
const (
	sourceConfig = "config"
	sourceAdmin  = "admin"
)

// routes is one version of the routing table.
type routes struct {
	byName map[string]*namespace
	// order lists the names: config namespaces in file order, then admin
	// ones by name.
	order []string
}

// lookup returns the namespace serving name, or nil.
func (p *Proxy) lookup(name string) *namespace { return p.routes.Load().byName[name] }

// with returns a copy of rt with ns in place of the namespace of its name,
// or without name when ns is nil.
func (rt *routes) with(name string, ns *namespace) *routes {
	out := &routes{byName: make(map[string]*namespace, len(rt.byName)+1)}
	var cfgNames, adminNames []string
	for _, n := range rt.order {
		if n == name {
			continue
		}
		out.byName[n] = rt.byName[n]
		if rt.byName[n].source == sourceConfig {
			cfgNames = append(cfgNames, n)
		} else {
			adminNames = append(adminNames, n)
		}
	}
	if ns != nil {
		out.byName[name] = ns
		if ns.source == sourceConfig {
			cfgNames = append(cfgNames, name)
		} else {
			adminNames = append(adminNames, name)
		}
	}
	sort.Strings(adminNames)
	out.order = append(cfgNames, adminNames...)
	return out
}

// nsPlan is a namespace built but not published: its slot uses point at
// their hosts, of which fresh ones are new (not registered, not started).
type nsPlan struct {
	ns    *namespace
	fresh []*host
	// remove, with ns nil, is the name of a namespace to remove.
	remove string
}

// discard releases what a plan holds that was never committed.
func (pl *nsPlan) discard() {
	if pl.ns != nil && pl.ns.registry != nil {
		pl.ns.registry.Close()
	}
}

// plan builds namespace nsCfg (validated) with its hosts; the caller holds
// p.mu, or has the proxy to itself (New).
func (p *Proxy) plan(nsCfg Namespace, source string, revision int64, spec string) (*nsPlan, error) {
	ns := &namespace{Namespace: nsCfg, byService: map[string]*slotUse{}, methods: map[string]*methodMetrics{},
		source: source, revision: revision, spec: spec}
	pl := &nsPlan{ns: ns}
	pat, _ := nsCfg.pattern()
	slots, _, _ := nsCfg.slots(pat)
	fresh := map[string]*host{}
	for _, s := range pat.Slots {
		ps := slots[s.Name]
		id := p.cfg.identity(ps)
		h := p.byID[id]
		if h == nil {
			h = fresh[id]
		}
		if h == nil {
			h = &host{id: id, spec: ps, cfg: &p.cfg, m: p.m, rnd: p.rnd, onChg: p.updateHealth,
				stderr: &lineWriter{out: p.sw}, builtin: p.builtins[ps.Builtin], log: p.log, tracing: p.tracing}
			fresh[id] = h
			pl.fresh = append(pl.fresh, h)
		}
		u := &slotUse{ns: ns, slot: s, host: h}
		ns.uses = append(ns.uses, u)
		for _, svc := range s.Services {
			ns.byService[svc] = u
		}
	}
	for _, full := range p.methodNames {
		ns.methods[full] = p.m.forMethod(ns.Name, full)
	}
	ns.unknown = p.m.forMethod(ns.Name, labelUnknownMethod)
	ns.inflight = p.m.inflight.WithLabelValues(ns.Name)
	for i, pt := range nsCfg.PatternList() {
		if i > 0 {
			ns.patternText += "+"
		}
		ns.patternText += string(pt)
	}
	if err := p.setupRegistry(ns); err != nil {
		return nil, err
	}
	return pl, nil
}

// commit publishes a plan: its fresh hosts are registered (and started when
// the proxy serves), its uses join their hosts, the routing table gets the
// namespace, and the namespace it replaces is retired. The caller holds
// p.mu, or has the proxy to itself (New).
func (p *Proxy) commit(pl *nsPlan) {
	ns := pl.ns
	for _, h := range pl.fresh {
		p.byID[h.id] = h
		p.hosts = append(p.hosts, h)
	}
	for _, u := range ns.uses {
		u.host.addUse(u)
		p.m.mode.WithLabelValues(ns.Name, u.slot.Name, modeOf(u.host.builtin != nil)).Set(1)
	}
	for _, h := range pl.fresh {
		h.log = p.log.With("plugin_host", h.id, "namespaces", h.namespaceNames())
	}
	old := p.lookup(ns.Name)
	p.routes.Store(p.routes.Load().with(ns.Name, ns))
	if old != nil {
		p.retire(old)
	}
	if p.listening {
		for _, h := range pl.fresh {
			h.start()
		}
		p.updateHealth()
	}
}

// remove takes namespace name out of the routing table and retires it;
// the caller holds p.mu. It reports whether there was one.
func (p *Proxy) remove(name string) bool {
	old := p.lookup(name)
	if old == nil {
		return false
	}
	p.routes.Store(p.routes.Load().with(name, nil))
	p.retire(old)
	p.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVICE_UNKNOWN)
	return true
}

// retire detaches a replaced or removed namespace from its hosts. Hosts
// left without a namespace are stopped (drained) in the background once
// their calls in flight have finished, or after drain_timeout.
func (p *Proxy) retire(old *namespace) {
	var idle []*host
	for _, u := range old.uses {
		h := u.host
		if h.removeUse(u) > 0 || slices.Contains(idle, h) {
			continue
		}
		delete(p.byID, h.id)
		p.hosts = slices.DeleteFunc(p.hosts, func(x *host) bool { return x == h })
		idle = append(idle, h)
	}
	if len(idle) == 0 && old.registry == nil {
		return
	}
	p.retiring.Add(1)
	go func() {
		defer p.retiring.Done()
		deadline := time.Now().Add(p.cfg.DrainTimeout)
		for _, h := range idle {
			for h.calls.Load() > 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond) // polling the count, bounded by the deadline
			}
			if n := h.calls.Load(); n > 0 {
				h.log.Warn("stopping a plugin no namespace uses with calls still in flight (drain_timeout passed)", "in_flight", n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			h.stop(ctx)
			cancel()
			h.log.Info("plugin host retired: no namespace uses it any more")
		}
		if old.registry != nil {
			old.registry.Close()
		}
	}()
}

// waitRetired waits (bounded by ctx) for retired hosts to stop.
func (p *Proxy) waitRetired(ctx context.Context) {
	done := make(chan struct{})
	go func() { p.retiring.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// hostByID returns the running host with id, or nil.
func (p *Proxy) hostByID(id string) *host {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byID[id]
}

// checkNewNamespace validates namespace ns for the live proxy: the builtins
// it names are linked. (Config validation ran in ParseNamespace.)
func (p *Proxy) checkNewNamespace(at string, ns Namespace) error {
	if errs := ns.checkBuiltins(at, p.builtins); len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}
