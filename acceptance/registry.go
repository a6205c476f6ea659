package acceptance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"go.yaml.in/yaml/v3"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/plugin"
	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/proto/capability"
	"github.com/prism-suite/prism/proto/handshake"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/reference/registry"
	"github.com/prism-suite/prism/suites/fixture"
	registrysuite "github.com/prism-suite/prism/suites/registry"
)

// PatternRegistry is Config.Pattern for certifying the reference proxy's
// multicast registry pattern over a registry slot and a messaging slot
// (prism-accept --pattern registry --registry-slot redis --messaging-slot nats).
const PatternRegistry = "registry"

// registrySpecs registers the registry run: the registry suite through a
// proxy whose namespaces compose the two slots' plugins.
func (r *Session) registrySpecs() {
	Describe(RootText, Ordered, ContinueOnFailure, func() {
		BeforeAll(r.setupRegistry)
		AfterAll(r.teardown)
		BeforeEach(traceSpec)
		Describe(ViaProxyText, Label("via:proxy"), func() {
			registrysuite.Register(r.proxyFixture)
		})
	})
}

// slotPlugin returns the plugin binary of a slot backend: prism-<kind> next
// to the proxy binary.
func (c Config) slotPlugin(kind backend.Kind) string {
	return filepath.Join(filepath.Dir(c.ProxyBinary), "prism-"+string(kind))
}

// registryNamespaces are the proxy namespaces of a registry run: main,
// schema and quota, each with both slots.
func (r *Session) registryNamespaces() []hproxy.Namespace {
	slot := func(kind backend.Kind) hproxy.Slot {
		s := hproxy.Slot{Plugin: r.cfg.slotPlugin(kind), Args: r.cfg.PluginArgs}
		if inst, ok := r.inst.(*slotInstances); ok {
			s.Config, s.Credentials = inst.configOf(kind)
		}
		return s
	}
	slots := map[string]hproxy.Slot{"registry": slot(r.cfg.RegistrySlot), "messaging": slot(r.cfg.MessagingSlot)}
	main, schema, quota := registrysuite.NamespaceConfigs("prism-test/" + r.fx.RunID + "/")
	ns := func(name, doc string) hproxy.Namespace {
		return hproxy.Namespace{Name: name, Patterns: []string{PatternRegistry}, Slots: slots, Registry: registryConfig(doc)}
	}
	base := r.cfg.Namespace
	return []hproxy.Namespace{ns(base, main), ns(base+"-schema", schema), ns(base+"-quota", quota)}
}

// registryConfig decodes a namespace's registry section as the proxy's
// config file holds it (the suite states it in that format); the suite's own
// text, so a field this proxy does not know is a bug in the suite.
func registryConfig(doc string) *registry.Config {
	var cfg registry.Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		panic(fmt.Sprintf("the registry suite's namespace config does not decode: %v\n%s", err, doc))
	}
	return &cfg
}

// launchRegistryProxy starts a proxy for the registry run and waits until
// its namespaces serve.
func (r *Session) launchRegistryProxy(ctx context.Context) (*hproxy.Proxy, error) {
	o := hproxy.DefaultOptions()
	o.Binary = r.cfg.ProxyBinary
	o.Env = r.cfg.PluginEnv
	o.DrainTimeout = r.cfg.Timeouts.Stop
	nss := r.registryNamespaces()
	px, err := hproxy.Start(ctx, o, nss...)
	if err != nil {
		return px, err
	}
	for _, n := range nss {
		if err := px.WaitServing(ctx, n.Name); err != nil {
			return px, fmt.Errorf("proxy namespace %q: %w; proxy stderr:\n%s", n.Name, err, handshake.TruncateTail(px.Stderr(), stderrInReports))
		}
	}
	return px, nil
}

// setupRegistry starts the slots' backends, reads what the slot plugins
// declare, starts the proxy and builds the fixture. The run's "plugin" is
// the proxy: its binary and digest go into the report, and it declares the
// registry capabilities its slots allow.
func (r *Session) setupRegistry() {
	r.start = time.Now()
	if err := r.cfg.Validate(); err != nil {
		r.infra = err
		return
	}
	log := r.cfg.Logf
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Backends.StartTimeout+r.cfg.Timeouts.Handshake+r.cfg.Timeouts.Eventually)
	defer cancel()
	r.cfg.Plugin = r.cfg.ProxyBinary
	var err error
	if r.sha, err = plugin.FileSHA256(r.cfg.ProxyBinary); err != nil {
		r.infra = err
		return
	}
	insts := &slotInstances{byKind: map[backend.Kind]backend.Instance{}, registry: r.cfg.RegistrySlot, messaging: r.cfg.MessagingSlot}
	r.inst = insts
	opts := r.cfg.Backends
	opts.Logf = log
	for _, kind := range []backend.Kind{r.cfg.RegistrySlot, r.cfg.MessagingSlot} {
		if _, ok := insts.byKind[kind]; ok {
			continue
		}
		inst, err := backend.Start(ctx, kind, opts)
		if inst != nil {
			insts.byKind[kind] = inst
		}
		if err != nil {
			r.infra = fmt.Errorf("start %s backend: %w", kind, err)
			return
		}
		info := inst.Info()
		log("backend: %s via %s %s %s", info.Kind, info.Provider, info.Image, info.Reason)
	}

	declared := map[string]capability.Set{}
	info := map[string]string{}
	for _, s := range []struct {
		slot string
		kind backend.Kind
	}{{"registry", r.cfg.RegistrySlot}, {"messaging", r.cfg.MessagingSlot}} {
		desc, err := describe(ctx, r.cfg.slotPlugin(s.kind), r.pluginOptions())
		if err != nil {
			r.failure = fmt.Errorf("%s slot: %w", s.slot, err)
			return
		}
		declared[s.slot] = capability.Declared(desc)
		var names []string
		for _, c := range desc.GetCapabilities() {
			names = append(names, c.GetName())
		}
		info[s.slot+"_slot"] = fmt.Sprintf("%s %s (%s): %s", desc.GetName(), desc.GetVersion(), r.cfg.slotPlugin(s.kind), strings.Join(names, ", "))
	}
	caps := registry.Capabilities(declared["registry"], declared["messaging"])
	r.desc = &lifecyclev1.DescribeResponse{Name: "registry", Version: string(r.cfg.RegistrySlot) + "+" + string(r.cfg.MessagingSlot), Info: info}
	var names []string
	for _, c := range caps.Sorted() {
		r.desc.Capabilities = append(r.desc.Capabilities, &lifecyclev1.Capability{Name: string(c), InterfaceVersion: "v1"})
		names = append(names, string(c))
	}
	log("registry: slots registry=%s messaging=%s offer %s", r.cfg.RegistrySlot, r.cfg.MessagingSlot, strings.Join(names, ", "))

	r.fx = &fixture.Fixture{Description: r.desc, Backend: insts, Timeouts: r.cfg.Timeouts,
		RunID: fmt.Sprintf("%d-%d", r.cfg.Seed, time.Now().UnixNano()%1_000_000), ProbeUndeclared: r.cfg.ProbeUndeclared}
	pctx, pcancel := context.WithTimeout(context.Background(), r.cfg.Timeouts.Handshake+r.cfg.Timeouts.Eventually)
	defer pcancel()
	r.px, err = r.launchRegistryProxy(pctx)
	if err != nil {
		// The proxy is what a pattern run certifies: its failure to serve is
		// a failure, not the harness's.
		r.failure = fmt.Errorf("start prism-proxy %s: %w", r.cfg.ProxyBinary, err)
		return
	}
	log("proxy: %s serving registry namespaces at %s after %v", r.cfg.ProxyBinary, r.px.Addr, r.px.ReadyTime.Round(time.Millisecond))
	r.fx.Target, r.fx.Proxy, r.fx.LaunchProxy = r.px.Target(r.cfg.Namespace), r.px, r.launchRegistryProxy
	r.fx.Registry = &fixture.Registry{Namespace: r.cfg.Namespace, SchemaNamespace: r.cfg.Namespace + "-schema",
		QuotaNamespace: r.cfg.Namespace + "-quota", RegistrySlot: string(r.cfg.RegistrySlot), MessagingSlot: string(r.cfg.MessagingSlot),
		SharedState: r.cfg.RegistrySlot != backend.Memstore}
	r.pfx = r.fx
}

// describe launches a plugin binary, asks Describe and stops it.
func describe(ctx context.Context, bin string, o plugin.Options) (*lifecyclev1.DescribeResponse, error) {
	p, err := plugin.Launch(ctx, bin, o)
	if err != nil {
		_ = p.Stop(context.Background())
		return nil, fmt.Errorf("launch %s: %w", bin, err)
	}
	desc, err := p.Lifecycle.Describe(ctx, &lifecyclev1.DescribeRequest{})
	if serr := p.Stop(context.Background()); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", bin, err)
	}
	return desc, nil
}

// slotInstances are the backend instances of a registry run's slots, as
// one instance for the report: its Info names both.
type slotInstances struct {
	byKind              map[backend.Kind]backend.Instance
	registry, messaging backend.Kind
}

func (s *slotInstances) configOf(kind backend.Kind) (map[string]any, map[string]string) {
	inst, ok := s.byKind[kind]
	if !ok {
		return nil, nil
	}
	v, c := inst.PluginConfig()
	return maps.Clone(v), maps.Clone(c)
}

// Info implements backend.Instance: the registry slot's instance, with the
// kind "registry+messaging" and the messaging slot's provider and image
// after a '+' when they differ.
func (s *slotInstances) Info() backend.Info {
	get := func(k backend.Kind) backend.Info {
		if inst, ok := s.byKind[k]; ok {
			return inst.Info()
		}
		return backend.Info{Kind: k, Provider: backend.None}
	}
	reg, msg := get(s.registry), get(s.messaging)
	out := reg
	out.Kind = s.registry + "+" + s.messaging
	join := func(a, b string) string {
		switch {
		case a == b || b == "":
			return a
		case a == "":
			return b
		}
		return a + "+" + b
	}
	out.Provider = backend.Provider(join(string(reg.Provider), string(msg.Provider)))
	out.Image = join(reg.Image, msg.Image)
	out.ServerVersion = join(reg.ServerVersion, msg.ServerVersion)
	out.Address = join(reg.Address, msg.Address)
	out.Reason = join(reg.Reason, msg.Reason)
	return out
}

// PluginConfig implements backend.Instance: every slot's credentials (for
// redaction).
func (s *slotInstances) PluginConfig() (map[string]any, map[string]string) {
	creds := map[string]string{}
	for kind, inst := range s.byKind {
		_, c := inst.PluginConfig()
		for k, v := range c {
			creds[string(kind)+"."+k] = v
		}
	}
	return map[string]any{}, creds
}

// Close implements backend.Instance.
func (s *slotInstances) Close(ctx context.Context) error {
	var errs []error
	for _, inst := range s.byKind {
		errs = append(errs, inst.Close(ctx))
	}
	return errors.Join(errs...)
}
