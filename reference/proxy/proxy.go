// Package proxy is Prism's reference proxy: it serves the same data services
// as a plugin (KeyValue, PubSub) and routes each call by its namespace, read
// from the request metadata x-prism-namespace, to the plugin process that
// serves that namespace, or to a builtin driver linked into the proxy.
//
// # Plugins
//
// For every distinct plugin block in the [Config] the proxy runs one plugin
// process (namespaces with identical blocks share it), launched with the
// harness launcher: handshake, gRPC health, Describe, a check that the plugin
// declares the capabilities the namespace's pattern needs (keyvalue needs
// keyvalue.basic, pubsub needs pubsub.basic; a namespace whose plugin lacks
// them is refused and its calls answer FailedPrecondition), Initialize with the
// config and credentials, Start. It calls the plugin's HealthCheck every
// health_interval; a plugin that exits, or misses three health checks in a row
// (it is then killed), is restarted with exponential backoff and jitter. While
// a plugin is down, its namespaces' calls fail at once with Unavailable.
//
// # Builtin drivers
//
// A plugin block may instead say "builtin: <name>": a Go driver linked into
// the proxy with [WithBuiltin] (prism-proxy links memstore, redis and nats;
// prism-proxy --list-builtins lists them). The proxy serves a fresh driver
// through the SDK's own machinery (backends/sdk Server: lifecycle states,
// validation, limits, error codes, decode rules, interceptors, health) on an
// in-process channel (sdk.Server.InProcess) instead of a socket, and hosts it
// like a process: Describe, the capability check, Initialize with the same
// config and credentials, Start, HealthCheck every health_interval. There is
// no process, handshake or HTTP/2 hop: a forwarded frame is decoded once into
// the driver's request and its response encoded once into the frame the
// proxy sends. A builtin that misses three health checks in a row is stopped
// (Stop, its driver closed) and a fresh driver starts with the same backoff;
// Shutdown drains and stops it like a process. Routing, auth, limits,
// request ids and metadata filtering are the same: the forwarded metadata is
// the driver's incoming metadata, never authorization. /status and the
// prism_proxy_plugin_mode metric say mode builtin, with the proxy's own pid.
//
// The registry pattern is the exception: the proxy serves
// prism.registry.v1.Registry itself for registry namespaces, with a
// coordinator (reference/registry) over the plugins of the namespace's
// registry and messaging slots; the routing errors below are the same.
//
// # Routing
//
// Calls are forwarded at the gRPC frame level: the proxy never unmarshals a
// request or response, so it forwards unary and streaming methods of any
// Prism service, including services added after it was built. A stream is
// copied one message at a time in each direction, so a slow reader slows the
// writer (backpressure); a client that goes away cancels the upstream call.
// Status codes, messages, details, headers and trailers pass through.
//
//   - no x-prism-namespace, more than one, or one that is not a namespace
//     name (1-128 letters, digits, '.', '_', '-'): InvalidArgument naming
//     x-prism-namespace, with or without auth;
//   - an x-request-id given twice or longer than [MaxRequestIDBytes]:
//     InvalidArgument;
//   - a namespace that is not configured: NotFound;
//   - a service the namespace's pattern does not serve (the Lifecycle service
//     among them: clients never reach a plugin's control plane): Unimplemented.
//
// Each call carries x-request-id to the plugin (one is generated when the
// client sent none) and back to the client in the response header. A plugin
// gets only the request metadata [Forwarded] allows: x-request-id,
// traceparent, tracestate and x-prism-*, never a key that looks like a
// credential; the call's deadline travels as gRPC's own.
//
// # Auth
//
// With [Config.Auth] set, every call to a forwarded service needs an
// "authorization: Bearer <JWT>" from the configured OIDC issuer that grants
// the access the method needs (read or write) on the call's namespace; the
// check runs before routing (reference/auth's interceptor; see auth.go), so
// a refused call never reaches a plugin: Unauthenticated for any token
// problem, PermissionDenied for a missing grant. Health and reflection need
// no token. Without Config.Auth every call is accepted, and the proxy logs a
// warning at start. Either way the authorization metadata is never forwarded
// to a plugin.
//
// # Limits
//
// [Config.Limits] bounds what a client can make the proxy hold, each limit
// with a safe default: message sizes per service (checked before a message
// is decoded or forwarded; ResourceExhausted), HTTP/2 streams per
// connection and header bytes, calls in flight (ResourceExhausted at once),
// the wait for a forwarded call's first message (DeadlineExceeded),
// keepalive pings, idle connections, and health watchers (with auth on,
// Health/Watch needs a valid token too). See [Limits].
//
// # Traces
//
// With [Config.Tracing] (or, in prism-proxy, the OTEL_* environment; see
// proto/tracing) the proxy continues the caller's W3C trace in a server
// span per call (otelgrpc), starts a "forward" span for the hop to the
// plugin (process or builtin), and sends the plugin that span's
// traceparent in place of the client's; both spans carry the namespace,
// method and request id. The plugins it launches get the same endpoint,
// under their binary's name. Without tracing nothing of it is installed,
// and the client's traceparent reaches the plugin untouched.
//
// # Operations
//
// The proxy serves gRPC health with one service name per namespace (SERVING
// while its plugins are up and none answered its last HealthCheck with
// UNHEALTHY; NOT_SERVING otherwise) and "" for the proxy itself, and gRPC reflection
// listing the forwarded services, so grpcurl works:
//
//	grpcurl -plaintext 127.0.0.1:7070 list
//	grpcurl -plaintext -H 'x-prism-namespace: default' -d '{"key":"k"}' \
//	    127.0.0.1:7070 prism.keyvalue.v1.KeyValue/Get
//
// On a separate HTTP address it serves Prometheus /metrics (calls, errors and
// latency per namespace and method, in-flight calls, plugin restarts, up and
// health) and /status (JSON: namespaces, plugin pids, states, restarts). Logs
// are slog JSON on stderr, with the plugins' stderr passed through line by line.
//
// [Proxy.Shutdown] (SIGTERM in prism-proxy) stops accepting calls, ends
// open streams (subscriptions, which never finish by themselves) at once
// with Unavailable, cancelling them upstream, lets in-flight unary calls
// finish until the drain deadline, then cancels the rest, drains and stops
// the plugins, and returns.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/proto/handshake"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/proto/tracing"
	"github.com/prism-suite/prism/reference/internal/authmutant"
	"github.com/prism-suite/prism/reference/registry"
)

// Metadata keys the proxy reads and writes.
const (
	// NamespaceKey names the namespace of a call.
	NamespaceKey = "x-prism-namespace"
	// RequestIDKey carries the request id to the plugin and back.
	RequestIDKey = "x-request-id"
)

// MaxMessageBytes is the largest message the proxy forwards.
const MaxMessageBytes = 64 << 20

// Proxy is a running (or ready to run) reference proxy.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	stderr io.Writer
	sw     *syncWriter // serialises the log and the plugins' stderr
	m      *metrics
	rnd    func() float64

	// mu serialises changes of the namespaces and hosts (New, the admin
	// API, the admin store's poll) and guards hosts, byID and listening.
	mu        sync.Mutex
	hosts     []*host
	byID      map[string]*host
	listening bool
	closed    bool
	// retiring counts the hosts being stopped after their last namespace
	// went away (live.go); Shutdown waits for them.
	retiring sync.WaitGroup
	builtins map[string]*builtin // WithBuiltin
	// routes is the routing table: replaced whole on every change, so a
	// call sees one consistent version of it.
	routes atomic.Pointer[routes]
	admin  *adminState     // admin.go; nil without cfg.Admin
	unary  map[string]bool // full method → unary, for the forwarded services' known methods
	// methodNames are the forwarded services' known methods, for metrics.
	methodNames []string
	codec       rawCodec

	grpc    *grpc.Server
	health  *health.Server
	httpSrv *http.Server
	lis     net.Listener
	mlis    net.Listener

	auth      authState // auth.go
	tracing   *tracing.Tracing
	ownTrace  bool // New started tracing (cfg.Tracing), so Shutdown flushes it
	draining  atomic.Bool
	inflight  atomic.Int64
	reqPrefix string
	reqSeq    atomic.Uint64
	// streams ends the forwarded streams still open when draining starts.
	streams  streamSet
	served   chan error
	stopOnce sync.Once
}

// namespace is a configured namespace with its slots resolved to hosts.
type namespace struct {
	Namespace
	byService map[string]*slotUse
	uses      []*slotUse
	methods   map[string]*methodMetrics
	unknown   *methodMetrics
	inflight  prometheus.Gauge
	// patternText names the patterns in errors ("keyvalue" or "keyvalue+pubsub").
	patternText string
	// registry serves the Registry service for a registry namespace.
	registry *registry.Coordinator
	// source is "config" (the YAML file) or "admin" (the admin API).
	source string
	// revision is an admin namespace's revision (0 for config ones).
	revision int64
	// spec is an admin namespace's spec as it was given (YAML).
	spec string
}

// Option configures New.
type Option func(*Proxy)

// WithLogger sets the logger (default: slog JSON on stderr at the config's level).
func WithLogger(l *slog.Logger) Option { return func(p *Proxy) { p.log = l } }

// WithTracing makes the proxy trace with t instead of what [Config.Tracing]
// says (tests that keep spans in memory). The caller shuts t down.
func WithTracing(t *tracing.Tracing) Option { return func(p *Proxy) { p.tracing = t } }

// WithPluginStderr sets where the plugins' stderr goes, line by line
// (default: os.Stderr).
func WithPluginStderr(w io.Writer) Option { return func(p *Proxy) { p.stderr = w } }

// New validates cfg and builds a proxy; nothing runs until [Proxy.Start].
func New(cfg Config, opts ...Option) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, m: newMetrics(), rnd: newRand(), byID: map[string]*host{},
		unary: map[string]bool{}, codec: newRawCodec(), served: make(chan error, 2), health: health.NewServer()}
	for _, o := range opts {
		o(p)
	}
	if err := cfg.checkBuiltins(p.builtins); err != nil {
		return nil, err
	}
	if p.stderr == nil {
		p.stderr = os.Stderr
	}
	sw := &syncWriter{w: p.stderr}
	p.sw = sw
	if p.log == nil {
		var lvl slog.Level
		_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
		p.log = slog.New(slog.NewJSONHandler(sw, &slog.HandlerOptions{Level: lvl}))
	}
	if err := p.setupAuth(); err != nil {
		return nil, err
	}
	if p.tracing == nil && cfg.Tracing.Enabled() {
		t, err := tracing.Start(context.Background(), cfg.Tracing, "prism-proxy")
		if err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		p.tracing, p.ownTrace = t, true
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	p.reqPrefix = hex.EncodeToString(b[:]) + "-"

	for _, sd := range forwardedServices() {
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			full := "/" + string(sd.FullName()) + "/" + string(md.Name())
			p.unary[full] = !md.IsStreamingClient() && !md.IsStreamingServer()
			p.methodNames = append(p.methodNames, full)
		}
	}
	p.routes.Store(&routes{byName: map[string]*namespace{}})
	for _, nsCfg := range cfg.Namespaces {
		pl, err := p.plan(nsCfg, sourceConfig, 0, "")
		if err != nil {
			return nil, err
		}
		p.commit(pl)
	}
	for _, h := range p.hosts {
		h.log = p.log.With("plugin_host", h.id, "namespaces", h.namespaceNames())
		if len(h.uses) > 1 {
			h.log.Info("namespaces share one plugin process (identical plugin blocks), and so the same data")
		}
	}
	if err := p.setupAdmin(); err != nil {
		p.closeRegistries()
		return nil, err
	}
	return p, nil
}

// Start is [Proxy.Listen], then a wait (bounded by ctx) until every plugin
// has started or failed its first attempt: a caller that goes on calling
// finds each namespace serving or failing with its reason.
func (p *Proxy) Start(ctx context.Context) error {
	if err := p.Listen(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	hosts := slices.Clone(p.hosts)
	p.mu.Unlock()
	for _, h := range hosts {
		select {
		case <-h.settled:
		case <-ctx.Done():
			return fmt.Errorf("start plugins: %w", ctx.Err())
		}
	}
	return nil
}

// Listen launches every plugin in the background and at once listens and
// serves: a plugin that is slow or unable to start never keeps the proxy
// from listening; its namespace answers Unavailable (and its health
// NOT_SERVING) with the reason until it serves. Use [Proxy.Addr] for the
// address and [Proxy.Shutdown] to stop.
func (p *Proxy) Listen(ctx context.Context) error {
	p.mu.Lock()
	p.listening = true
	for _, h := range p.hosts {
		h.start()
	}
	p.mu.Unlock()

	watch := &healthWatchGate{max: int64(p.cfg.Limits.MaxHealthWatchers), authz: p.auth.a}
	opts := append([]grpc.ServerOption{
		grpc.ForceServerCodecV2(p.codec),
		grpc.UnknownServiceHandler(p.handle),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.ChainStreamInterceptor(watch.stream),
		// Calls run on a pool of goroutines whose stacks have grown to the
		// forwarding path's depth, instead of one new goroutine per call
		// that grows (copies) its stack every time.
		grpc.NumStreamWorkers(streamWorkers),
	}, p.cfg.Limits.serverOptions()...)
	// Tracing off: no stats handler at all (proto/tracing).
	opts = append(opts, p.tracing.ServerOptions()...)
	p.grpc = grpc.NewServer(append(opts, p.authServerOptions(ctx)...)...)
	healthpb.RegisterHealthServer(p.grpc, p.health)
	p.grpc.RegisterService(limitedService(&registryv1.Registry_ServiceDesc, p.cfg.Limits.receiveLimit(RegistryService),
		p.cfg.Limits.FirstMessageTimeout),
		registry.NewServer(p.registryLookup))
	ropts := reflection.ServerOptions{Services: reflectServices{p.grpc}}
	reflectionv1.RegisterServerReflectionServer(p.grpc, reflection.NewServerV1(ropts))
	reflectionv1alpha.RegisterServerReflectionServer(p.grpc, reflection.NewServer(ropts))
	p.updateHealth()
	p.mu.Lock()
	hosts := slices.Clone(p.hosts)
	p.mu.Unlock()

	var err error
	if p.lis, err = net.Listen("tcp", p.cfg.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", p.cfg.Listen, err)
	}
	if p.cfg.MetricsListen != "off" {
		if p.mlis, err = net.Listen("tcp", p.cfg.MetricsListen); err != nil {
			_ = p.lis.Close()
			return fmt.Errorf("listen %s: %w", p.cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(p.m.reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/status", p.serveStatus)
		p.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := p.httpSrv.Serve(p.mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.served <- fmt.Errorf("serve metrics: %w", err)
			}
		}()
	}
	go func() {
		if err := p.grpc.Serve(p.lis); err != nil {
			p.served <- fmt.Errorf("serve grpc: %w", err)
		}
	}()
	if err := p.listenAdmin(ctx); err != nil {
		p.grpc.Stop()
		return err
	}
	p.log.Info("serving", "version", Version, "grpc", p.Addr(), "metrics", p.MetricsAddr(), "admin", p.AdminAddr(),
		"namespaces", len(p.routes.Load().byName), "plugin_processes", len(hosts))
	return nil
}

// Addr is the gRPC address the proxy listens on.
func (p *Proxy) Addr() string {
	if p.lis == nil {
		return ""
	}
	return p.lis.Addr().String()
}

// MetricsAddr is the HTTP address of /metrics and /status ("" when off).
func (p *Proxy) MetricsAddr() string {
	if p.mlis == nil {
		return ""
	}
	return p.mlis.Addr().String()
}

// Err delivers an error when serving fails.
func (p *Proxy) Err() <-chan error { return p.served }

// Shutdown stops accepting calls, ends open streams with Unavailable, waits
// for in-flight unary calls until ctx ends (then cancels them), drains and stops the plugins, and closes the
// metrics server. The proxy cannot be started again.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() {
		p.draining.Store(true)
		p.m.draining.Set(1)
		p.log.Info("draining", "in_flight", p.inflight.Load())
		if n := p.streams.endAll(); n > 0 {
			p.log.Info("ended open streams for the drain", "streams", n)
		}
		if p.grpc != nil {
			p.health.Shutdown()
			done := make(chan struct{})
			go func() { p.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
				p.log.Info("drained")
			case <-ctx.Done():
				p.log.Warn("drain deadline passed; cancelling calls still in flight", "in_flight", p.inflight.Load())
				p.grpc.Stop()
				<-done
			}
		}
		p.stopAdmin()
		p.closeRegistries()
		pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.mu.Lock()
		p.closed = true
		hosts := slices.Clone(p.hosts)
		p.mu.Unlock()
		p.waitRetired(pctx)
		var wg sync.WaitGroup
		for _, h := range hosts {
			wg.Add(1)
			go func() { defer wg.Done(); h.stop(pctx) }()
		}
		wg.Wait()
		if p.httpSrv != nil {
			_ = p.httpSrv.Shutdown(pctx)
		}
		if p.auth.a != nil {
			p.auth.a.Close()
		}
		if p.ownTrace {
			if err := p.tracing.Shutdown(pctx); err != nil {
				p.log.Warn("tracing", "error", err.Error())
			}
		}
		p.log.Info("stopped")
	})
	return nil
}

// updateHealth sets each namespace's health from its plugins.
func (p *Proxy) updateHealth() {
	if p.health == nil {
		return
	}
	for name, ns := range p.routes.Load().byName {
		st := healthpb.HealthCheckResponse_SERVING
		for _, u := range ns.uses {
			if u.refusal() != "" || u.host.cur.Load() == nil || u.host.unhealthy() {
				st = healthpb.HealthCheckResponse_NOT_SERVING
			}
		}
		p.health.SetServingStatus(name, st)
	}
	p.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
}

// reflectServices lists the proxy's own services and the forwarded ones,
// whose handler is the unknown-service handler, for reflection.
type reflectServices struct{ srv *grpc.Server }

func (r reflectServices) GetServiceInfo() map[string]grpc.ServiceInfo {
	m := r.srv.GetServiceInfo()
	for _, sd := range forwardedServices() {
		info := grpc.ServiceInfo{Metadata: sd.ParentFile().Path()}
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			info.Methods = append(info.Methods, grpc.MethodInfo{Name: string(md.Name()),
				IsClientStream: md.IsStreamingClient(), IsServerStream: md.IsStreamingServer()})
		}
		m[string(sd.FullName())] = info
	}
	return m
}

// streamWorkers is the number of goroutines that serve calls; a call
// arriving while all are busy gets a goroutine of its own, as without them.
const streamWorkers = 128

// handle routes and forwards every call to a service the proxy does not
// implement itself.
func (p *Proxy) handle(_ any, ss grpc.ServerStream) error {
	start := time.Now()
	full, _ := grpc.MethodFromServerStream(ss)
	ctx := ss.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	service := serviceOf(full)

	nsName, err := namespaceOf(md)
	if err != nil {
		return err
	}
	if err := checkRequestID(md); err != nil {
		return err
	}
	ns := p.lookup(nsName)
	if ns == nil {
		return status.Errorf(codes.NotFound, "namespace %q is not configured on this proxy (%s)", nsName, NamespaceKey)
	}
	mm := ns.methods[full]
	if mm == nil {
		mm = ns.unknown
	}
	mm.requests.Inc()
	err = p.route(ctx, ss, ns, service, full, md)
	mm.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		mm.fail(status.Code(err))
	}
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.LogAttrs(ctx, slog.LevelDebug, "call", slog.String("namespace", nsName), slog.String("method", full),
			slog.String("code", status.Code(err).String()), slog.Duration("duration", time.Since(start)),
			slog.String("request_id", first(md, RequestIDKey)))
	}
	return err
}

func (p *Proxy) route(ctx context.Context, ss grpc.ServerStream, ns *namespace, service, full string, md metadata.MD) (err error) {
	u := ns.byService[service]
	if u == nil {
		return status.Errorf(codes.Unimplemented, "namespace %q serves pattern %s, which does not include %s", ns.Name, ns.patternText, service)
	}
	if r := u.refusal(); r != "" {
		return status.Error(codes.FailedPrecondition, r)
	}
	u.host.calls.Add(1)
	defer u.host.calls.Add(-1)
	lv := u.host.cur.Load()
	if lv == nil {
		return u.host.unavailable(ns.Name)
	}
	if p.draining.Load() {
		return status.Error(codes.Unavailable, "the proxy is shutting down")
	}
	out := forwardedMetadata(md, authmutant.Compiled && authmutant.Has(authmutant.LeakToken))
	id := first(md, RequestIDKey)
	if id == "" {
		id = p.reqPrefix + strconv.FormatUint(p.reqSeq.Add(1), 36)
		out[RequestIDKey] = []string{id}
		md[RequestIDKey] = []string{id}
	}
	fctx := ctx
	if p.tracing != nil {
		annotate(ctx, ns.Name, full, id)
		var sp trace.Span
		fctx, sp = p.forwardSpan(ctx, ns.Name, full, id)
		// The plugin continues the forward span, not the client's: this
		// replaces the traceparent the client sent.
		p.tracing.Inject(fctx, out)
		defer func() { endSpan(sp, err) }()
	}
	octx := metadata.NewOutgoingContext(fctx, out)
	if p.inflight.Add(1) > int64(p.cfg.Limits.MaxInFlight) {
		p.inflight.Add(-1)
		return p.overloaded()
	}
	ns.inflight.Inc()
	defer func() {
		p.inflight.Add(-1)
		ns.inflight.Dec()
	}()
	first, err := p.firstMessage(ss, service)
	if err != nil {
		return err
	}
	if first == nil && p.unary[full] { // the client half-closed without a message
		return status.Error(codes.InvalidArgument, "the call has no request message")
	}
	if p.unary[full] {
		err = p.forwardUnary(octx, ss, lv, full, id, first)
	} else {
		err = p.forwardStream(octx, ss, lv.conn, full, id, first, service)
	}
	err = shortStatus(err)
	// A plugin that dies mid-call has its connection closed by the
	// supervisor, which gRPC reports as Canceled; the client did not cancel,
	// so the truth for it is that the plugin is unavailable.
	if status.Code(err) == codes.Canceled && ctx.Err() == nil {
		return u.host.unavailable(ns.Name)
	}
	return err
}

// firstMessage receives a forwarded call's first request message within
// limits.first_message_timeout (a half-open stream holds nothing longer),
// checked against the service's size limit. It returns nil when the client
// half-closed without sending one.
func (p *Proxy) firstMessage(ss grpc.ServerStream, service string) (*frame, error) {
	type got struct {
		f   *frame
		err error
	}
	ch := make(chan got, 1)
	go func() {
		f := &frame{}
		err := ss.RecvMsg(f)
		ch <- got{f, err}
	}()
	t := time.NewTimer(p.cfg.Limits.FirstMessageTimeout)
	defer t.Stop()
	select {
	case g := <-ch:
		if errors.Is(g.err, io.EOF) {
			return nil, nil
		}
		if g.err != nil {
			return nil, g.err
		}
		if err := p.checkFrame(g.f, service); err != nil {
			return nil, err
		}
		return g.f, nil
	case <-t.C:
		// Returning ends the stream, which ends the RecvMsg above; a
		// message that makes it in just now is released.
		go func() {
			if g := <-ch; g.err == nil {
				g.f.free()
			}
		}()
		return nil, status.Errorf(codes.DeadlineExceeded, "no request message within %v of the call's start (limits.first_message_timeout)", p.cfg.Limits.FirstMessageTimeout)
	}
}

// maxStatusMessageBytes bounds a plugin's status message as the proxy
// passes it on.
const maxStatusMessageBytes = 4 << 10

// shortStatus cuts a status message from a plugin to maxStatusMessageBytes
// (with its length), keeping the code and the details.
func shortStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || len(st.Message()) <= maxStatusMessageBytes {
		return err
	}
	sp := st.Proto()
	sp.Message = handshake.Truncate(sp.Message, maxStatusMessageBytes)
	return status.FromProto(sp).Err()
}

// forwardUnary forwards one request and one response.
func (p *Proxy) forwardUnary(ctx context.Context, ss grpc.ServerStream, lv *live, full, id string, req *frame) error {
	resp := &frame{}
	var hdr, trl metadata.MD
	err := lv.conn.Invoke(ctx, full, req, resp, grpc.ForceCodecV2(p.codec), grpc.Header(&hdr), grpc.Trailer(&trl))
	if !lv.builtin {
		// A builtin's channel owns the request once Invoke is called: it
		// decodes and frees it on the driver's goroutine, which may
		// outlive a cancelled Invoke.
		req.free()
	}
	if hdr == nil {
		hdr = metadata.MD{}
	}
	hdr.Set(RequestIDKey, id)
	_ = ss.SetHeader(hdr)
	if len(trl) > 0 {
		ss.SetTrailer(trl)
	}
	if err != nil {
		resp.free()
		return err
	}
	return ss.SendMsg(resp)
}

var streamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// forwardStream copies messages both ways, one at a time, so each side's
// flow control holds the other back; the upstream call ends with the
// client's (its context is the client's).
//
// A stream is open-ended (a subscription), so draining does not wait for
// it: when the proxy starts draining it cancels the upstream call and ends
// the stream with Unavailable, as a plugin that drains does.
func (p *Proxy) forwardStream(ctx context.Context, ss grpc.ServerStream, conn grpc.ClientConnInterface, full, id string, first *frame, service string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ended, forget := p.streams.add(cancel)
	defer forget()
	err := p.copyStream(ctx, cancel, ss, conn, full, id, first, service)
	if err != nil && ended.Load() {
		return status.Error(codes.Unavailable, "the proxy is shutting down: open streams end so that it can drain; reconnect to another proxy")
	}
	return err
}

// streamSet holds the cancel functions of the open forwarded streams.
type streamSet struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]streamEntry
	done bool
}

type streamEntry struct {
	cancel context.CancelFunc
	ended  *atomic.Bool
}

// add registers a stream's cancel function; ended turns true when
// [streamSet.endAll] ends it. forget removes it.
func (s *streamSet) add(cancel context.CancelFunc) (ended *atomic.Bool, forget func()) {
	ended = &atomic.Bool{}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		ended.Store(true)
		cancel()
		return ended, func() {}
	}
	if s.m == nil {
		s.m = map[uint64]streamEntry{}
	}
	s.next++
	k := s.next
	s.m[k] = streamEntry{cancel: cancel, ended: ended}
	return ended, func() { s.mu.Lock(); delete(s.m, k); s.mu.Unlock() }
}

// endAll ends every open stream, and every stream added later, and returns
// how many were open.
func (s *streamSet) endAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	for _, e := range s.m {
		e.ended.Store(true)
		e.cancel()
	}
	return len(s.m)
}

// copyStream does forwardStream's copying; cancel ends the upstream call.
func (p *Proxy) copyStream(ctx context.Context, cancel context.CancelFunc, ss grpc.ServerStream, conn grpc.ClientConnInterface, full, id string, first *frame, service string) error {
	cs, err := conn.NewStream(ctx, streamDesc, full, grpc.ForceCodecV2(p.codec))
	if err != nil {
		if first != nil {
			first.free()
		}
		return err
	}
	tooBig := make(chan error, 1)
	go func() {
		f := first
		for {
			if f == nil {
				f = &frame{}
				err := ss.RecvMsg(f)
				if err == nil {
					err = p.checkFrame(f, service)
					if err != nil {
						tooBig <- err
					}
				}
				if err != nil {
					if errors.Is(err, io.EOF) {
						_ = cs.CloseSend()
					} else {
						cancel()
					}
					return
				}
			}
			if err := cs.SendMsg(f); err != nil {
				f.free()
				return // the upstream's status arrives through RecvMsg
			}
			f = nil
		}
	}()
	hdr, err := cs.Header()
	if err == nil {
		if hdr == nil {
			hdr = metadata.MD{}
		}
		hdr.Set(RequestIDKey, id)
		if err := ss.SendHeader(hdr); err != nil {
			return err
		}
	}
	for {
		f := &frame{}
		if err := cs.RecvMsg(f); err != nil {
			if t := cs.Trailer(); len(t) > 0 {
				ss.SetTrailer(t)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			select {
			case big := <-tooBig: // we cancelled the upstream for this
				return big
			default:
			}
			return err
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
}

// forwardedMetadata is the request metadata a plugin gets: only the keys
// [Forwarded] allows, never one that looks like a credential. leak is the
// test-only defect leak-token, which forwards authorization too.
func forwardedMetadata(md metadata.MD, leak bool) metadata.MD {
	out := make(metadata.MD, len(md)+1)
	for k, v := range md {
		if Forwarded(k) || (leak && k == "authorization") {
			out[k] = v
		}
	}
	return out
}

// Forwarded reports whether the proxy forwards request metadata key k to
// a plugin. It forwards an allow-list: x-request-id, the W3C trace context
// (traceparent, tracestate) and the x-prism-* keys, except any key that
// looks like a credential (it contains auth, token, secret, password,
// cookie, session, credential or key, as in x-prism-api-key). Everything
// else stays at the proxy: authorization and every look-alike
// (x-authorization, proxy-authorization, cookie), client-specific headers,
// and grpc-* (the deadline reaches the plugin as gRPC's own grpc-timeout,
// from the call's context).
func Forwarded(k string) bool {
	k = strings.ToLower(k)
	switch {
	case k == RequestIDKey, k == "traceparent", k == "tracestate", strings.HasPrefix(k, "x-prism-"):
	default:
		return false
	}
	for _, c := range credentialWords {
		if strings.Contains(k, c) {
			return false
		}
	}
	return true
}

// credentialWords mark a metadata key as a credential: it is never forwarded.
var credentialWords = []string{"auth", "token", "secret", "passw", "cookie", "session", "credential", "key", "bearer", "signature"}

// namespaceOf reads the call's namespace: exactly one x-prism-namespace
// holding a namespace name, else InvalidArgument naming the metadata (never
// echoing a value, which can be anything the client sent).
func namespaceOf(md metadata.MD) (string, error) {
	v := md.Get(NamespaceKey)
	switch {
	case len(v) == 0 || v[0] == "":
		return "", status.Errorf(codes.InvalidArgument, "request metadata %s is required: it names the namespace to route the call to", NamespaceKey)
	case len(v) > 1:
		return "", status.Errorf(codes.InvalidArgument, "request metadata %s is given %d times; give it once", NamespaceKey, len(v))
	case !nameRE.MatchString(v[0]):
		return "", status.Errorf(codes.InvalidArgument, "request metadata %s (%d bytes) is not a namespace name (1-128 letters, digits, '.', '_' or '-', starting with a letter or digit)", NamespaceKey, len(v[0]))
	}
	return v[0], nil
}

func serviceOf(full string) string {
	s := strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// MaxRequestIDBytes bounds a client's x-request-id: the proxy forwards it,
// returns it and logs it.
const MaxRequestIDBytes = 128

// checkRequestID refuses an x-request-id given more than once or longer
// than MaxRequestIDBytes.
func checkRequestID(md metadata.MD) error {
	v := md.Get(RequestIDKey)
	switch {
	case len(v) > 1:
		return status.Errorf(codes.InvalidArgument, "request metadata %s is given %d times; give it at most once", RequestIDKey, len(v))
	case len(v) == 1 && len(v[0]) > MaxRequestIDBytes:
		return status.Errorf(codes.InvalidArgument, "request metadata %s is %d bytes long, over the %d allowed", RequestIDKey, len(v[0]), MaxRequestIDBytes)
	}
	return nil
}

func first(md metadata.MD, k string) string {
	if v := md.Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Status is what /status serves.
type Status struct {
	Draining   bool              `json:"draining"`
	InFlight   int64             `json:"in_flight"`
	Namespaces []NamespaceStatus `json:"namespaces"`
}

// NamespaceStatus is one namespace in [Status].
type NamespaceStatus struct {
	Name     string       `json:"name"`
	Patterns []Pattern    `json:"patterns"`
	Serving  bool         `json:"serving"`
	Slots    []SlotStatus `json:"slots"`
}

// SlotStatus is one slot's plugin in [NamespaceStatus]. It never shows
// config values or credentials.
type SlotStatus struct {
	Slot string `json:"slot"`
	// Process identifies the plugin process; slots sharing it show the same.
	Process string `json:"process"`
	// Mode is "process" (a plugin binary) or "builtin" (a driver linked
	// into the proxy, whose PID is the proxy's own).
	Mode     string `json:"mode"`
	Binary   string `json:"binary,omitempty"`
	Builtin  string `json:"builtin,omitempty"`
	Plugin   string `json:"plugin,omitempty"`
	PID      int    `json:"pid,omitempty"`
	State    string `json:"state"`
	Health   string `json:"health,omitempty"`
	Restarts int    `json:"restarts"`
	Refused  string `json:"refused,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Status returns the proxy's state.
func (p *Proxy) Status() Status {
	s := Status{Draining: p.draining.Load(), InFlight: p.inflight.Load()}
	rt := p.routes.Load()
	for _, name := range rt.order {
		ns := rt.byName[name]
		n := NamespaceStatus{Name: ns.Name, Patterns: ns.PatternList(), Serving: true}
		for _, u := range ns.uses {
			st, pid, restarts, lastErr, health := u.host.snapshot()
			ss := SlotStatus{Slot: u.slot.Name, Process: u.host.id, Mode: modeOf(u.host.builtin != nil),
				Binary: p.cfg.resolve(u.host.spec.Binary), Builtin: u.host.spec.Builtin, PID: pid,
				State: string(st), Health: health, Restarts: restarts, Refused: u.refusal(), Error: lastErr}
			if lv := u.host.cur.Load(); lv != nil {
				ss.Plugin = lv.pluginName() + " " + lv.pluginVersion()
			} else {
				n.Serving = false
			}
			if ss.Refused != "" || ss.Health == "unhealthy" {
				n.Serving = false
			}
			n.Slots = append(n.Slots, ss)
		}
		s.Namespaces = append(s.Namespaces, n)
	}
	return s
}

func (p *Proxy) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(p.Status())
}
