package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/registry"
)

// The registry pattern is not forwarded: the proxy serves
// prism.registry.v1.Registry itself, with one registry.Coordinator per
// registry namespace over the plugins of the namespace's two slots.

// checkRegistry validates a namespace's registry block: it belongs to the
// registry pattern, and its settings are valid.
func (ns Namespace) checkRegistry(at string) []error {
	has := slices.Contains(ns.PatternList(), Registry)
	switch {
	case ns.Registry != nil && !has:
		return []error{fmt.Errorf("%s.registry: only a namespace with pattern registry takes a registry block", at)}
	case ns.Registry == nil:
		return nil
	}
	err := ns.Registry.Validate()
	if err == nil {
		return nil
	}
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, fmt.Errorf("%s.registry.%w", at, e))
		}
		return out
	}
	return []error{fmt.Errorf("%s.registry.%w", at, err)}
}

// setupRegistry makes the coordinator of a registry namespace.
func (p *Proxy) setupRegistry(ns *namespace) error {
	if !slices.Contains(ns.PatternList(), Registry) {
		return nil
	}
	var reg, msg *slotUse
	for _, u := range ns.uses {
		switch u.slot.Name {
		case registrySlot:
			reg = u
		case messagingSlot:
			msg = u
		}
	}
	cfg := registry.Config{}
	if ns.Registry != nil {
		cfg = *ns.Registry
	}
	c, err := registry.New(ns.Name, cfg, slotOf(reg), slotOf(msg), registry.WithLogger(p.log.With(slog.String("pattern", string(Registry)))))
	if err != nil {
		return err
	}
	ns.registry = c
	for _, m := range registryv1.Registry_ServiceDesc.Methods {
		full := "/" + RegistryService + "/" + m.MethodName
		ns.methods[full] = p.m.forMethod(ns.Name, full)
	}
	for _, s := range registryv1.Registry_ServiceDesc.Streams {
		full := "/" + RegistryService + "/" + s.StreamName
		ns.methods[full] = p.m.forMethod(ns.Name, full)
	}
	return nil
}

// slotOf gives the coordinator the plugin of a slot: its connection while it
// is up, FailedPrecondition while the namespace is refused, Unavailable
// while the plugin is down.
func slotOf(u *slotUse) registry.Slot {
	return func() (grpc.ClientConnInterface, *lifecyclev1.DescribeResponse, error) {
		if r := u.refusal(); r != "" {
			return nil, nil, status.Error(codes.FailedPrecondition, r)
		}
		lv := u.host.cur.Load()
		if lv == nil {
			return nil, nil, u.host.unavailable(u.ns.Name)
		}
		return lv.conn, lv.desc, nil
	}
}

// registryLookup routes a Registry call to its namespace's coordinator, with
// the same routing errors as forwarded calls, and accounts for it in the
// metrics and the in-flight count.
func (p *Proxy) registryLookup(ctx context.Context, full string) (*registry.Coordinator, func(error), error) {
	start := time.Now()
	md, _ := metadata.FromIncomingContext(ctx)
	nsName, err := namespaceOf(md)
	if err != nil {
		return nil, nil, err
	}
	if err := checkRequestID(md); err != nil {
		return nil, nil, err
	}
	ns := p.lookup(nsName)
	if ns == nil {
		return nil, nil, status.Errorf(codes.NotFound, "namespace %q is not configured on this proxy (%s)", nsName, NamespaceKey)
	}
	mm := ns.methods[full]
	if mm == nil {
		mm = ns.unknown
	}
	mm.requests.Inc()
	fail := func(err error) (*registry.Coordinator, func(error), error) {
		mm.latency.Observe(time.Since(start).Seconds())
		mm.fail(status.Code(err))
		return nil, nil, err
	}
	if ns.registry == nil {
		return fail(status.Errorf(codes.Unimplemented, "namespace %q serves pattern %s, which does not include %s", ns.Name, ns.patternText, RegistryService))
	}
	if p.draining.Load() {
		return fail(status.Error(codes.Unavailable, "the proxy is shutting down"))
	}
	if id := first(md, RequestIDKey); id != "" {
		_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDKey, id))
	}
	if p.inflight.Add(1) > int64(p.cfg.Limits.MaxInFlight) {
		p.inflight.Add(-1)
		return fail(p.overloaded())
	}
	ns.inflight.Inc()
	return ns.registry, func(err error) {
		p.inflight.Add(-1)
		ns.inflight.Dec()
		mm.latency.Observe(time.Since(start).Seconds())
		if err != nil {
			mm.fail(status.Code(err))
		}
		if p.log.Enabled(ctx, slog.LevelDebug) {
			p.log.LogAttrs(ctx, slog.LevelDebug, "call", slog.String("namespace", nsName), slog.String("method", full),
				slog.String("code", status.Code(err).String()), slog.Duration("duration", time.Since(start)),
				slog.String("request_id", first(md, RequestIDKey)))
		}
	}, nil
}

// closeRegistries stops the coordinators' background work.
func (p *Proxy) closeRegistries() {
	for _, ns := range p.routes.Load().byName {
		if ns.registry != nil {
			ns.registry.Close()
		}
	}
}
