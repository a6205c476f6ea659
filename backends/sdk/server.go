package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/proto/detail"
	"github.com/prism-suite/prism/proto/handshake"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/proto/tracing"
)

// Version is the SDK's version, reported in Describe's info.
const Version = "0.1.0"

// MaxMessageBytes is the largest gRPC message a plugin accepts or sends
// (the protocol's, [handshake.MaxMessageBytes]).
const MaxMessageBytes = handshake.MaxMessageBytes

// GoroutinesDetail is the HealthCheck detail that holds the plugin process's
// goroutine count: an extra of the Go SDK for people; hosts and suites read
// the standard details of proto/detail instead.
const GoroutinesDetail = "sdk.goroutines"

// RequestIDKey is the metadata key of a request id the host propagates; the
// SDK logs it with every call and echoes it in the call's response trailer
// (the proxy sets the response header's x-request-id itself, so the trailer
// is what shows that the plugin got it).
const RequestIDKey = "x-request-id"

// NamespaceKey is the metadata key of the namespace a host (the proxy)
// routed the call for; the SDK puts it on the call's span.
const NamespaceKey = "x-prism-namespace"

type state int32

const (
	stateNew state = iota
	stateInitialized
	stateStarted
	stateDraining
	stateStopped
)

func (s state) String() string {
	return [...]string{"new", "initialized", "started", "draining", "stopped"}[s]
}

// Server holds a driver and serves it over gRPC: the lifecycle service, the
// data services of the declared capabilities, gRPC health and reflection.
type Server struct {
	driver Driver
	log    *slog.Logger
	health *health.Server
	grpc   *grpc.Server

	mu       sync.Mutex // serialises lifecycle transitions
	state    atomic.Int32
	inflight sync.WaitGroup
	active   atomic.Int64  // data calls admitted and not ended: detail.InflightCalls
	streams  atomic.Int64  // of which streams: detail.OpenStreams
	draining chan struct{} // closed when Drain begins: long-lived streams end
	failed   *decodeFailures

	unary   []grpc.UnaryServerInterceptor
	stream  []grpc.StreamServerInterceptor
	tracing *tracing.Tracing // nil: off
	inproc  struct {
		once sync.Once
		ch   grpc.ClientConnInterface
	}
	trip tripwire // calls that arrived with authorization metadata
}

// ServerOption configures a Server.
type ServerOption func(*serverOptions)

type serverOptions struct {
	logger  *slog.Logger
	tracing *tracing.Tracing
	unary   []grpc.UnaryServerInterceptor
	stream  []grpc.StreamServerInterceptor
}

// WithLogger sets the logger (default: slog JSON on stderr).
func WithLogger(l *slog.Logger) ServerOption { return func(o *serverOptions) { o.logger = l } }

// WithTracing makes the server continue its callers' traces: a server span
// per call (otelgrpc's stats handler on the socket; a span of the SDK's own
// on [Server.InProcess]) carrying the namespace, method and request id, in
// whose context the driver runs, so [tracing.Child] spans of the driver are
// its children. A nil t (the default) installs nothing. [Serve] sets it up
// from the OTEL_* environment.
func WithTracing(t *tracing.Tracing) ServerOption { return func(o *serverOptions) { o.tracing = t } }

// WithUnaryInterceptor adds a unary interceptor after the SDK's own.
func WithUnaryInterceptor(i grpc.UnaryServerInterceptor) ServerOption {
	return func(o *serverOptions) { o.unary = append(o.unary, i) }
}

// WithStreamInterceptor adds a stream interceptor after the SDK's own.
func WithStreamInterceptor(i grpc.StreamServerInterceptor) ServerOption {
	return func(o *serverOptions) { o.stream = append(o.stream, i) }
}

// streamWorkers is the gRPC server's number of call-serving goroutines.
const streamWorkers = 64

// NewServer returns a Server for d. Use [Server.GRPC] to serve it on a
// listener of your own (in-process tests), or [Serve] for a plugin process.
func NewServer(d Driver, opts ...ServerOption) *Server {
	o := serverOptions{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	s := &Server{driver: d, log: o.logger, health: health.NewServer(), draining: make(chan struct{}), tracing: o.tracing}
	unary := []grpc.UnaryServerInterceptor{s.tripUnary, s.logUnary}
	stream := []grpc.StreamServerInterceptor{s.tripStream, s.logStream}
	if s.tracing != nil {
		unary = append(unary, annotateUnary)
		stream = append(stream, annotateStream)
	}
	unary = append(unary, o.unary...)
	stream = append(stream, o.stream...)
	s.failed = &decodeFailures{}
	s.unary, s.stream = unary, stream
	s.grpc = grpc.NewServer(append([]grpc.ServerOption{
		grpc.ForceServerCodecV2(newDecodeCodec(s.failed)),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		// Static flow-control windows, the same as the host's
		// (launch.DialOptions): gRPC's bandwidth-delay estimation would
		// otherwise PING the host on nearly every call when few are in flight.
		grpc.InitialWindowSize(handshake.StreamWindowBytes),
		grpc.InitialConnWindowSize(handshake.ConnWindowBytes),
		// Calls run on goroutines whose stacks have already grown to the
		// depth of a call; more at once get a goroutine each, as without.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}, s.tracing.ServerOptions()...)...)
	s.register(s.grpc)
	// The process is up: the host may call Lifecycle. Data services report
	// NOT_SERVING until Start.
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.setDataHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	return s
}

// register registers every service the SDK serves on r: the one list for
// the gRPC server of a plugin process and for the in-process channel of
// [Server.InProcess].
func (s *Server) register(r reflection.GRPCServer) {
	// A request that does not decode (a string that is not UTF-8) is
	// InvalidArgument, not gRPC's Internal.
	r.RegisterService(s.failed.desc(&lifecyclev1.Lifecycle_ServiceDesc), &lifecycleService{s: s})
	if _, ok := s.driver.(KeyValueBasic); ok {
		r.RegisterService(s.failed.desc(&keyvaluev1.KeyValue_ServiceDesc), &keyValueService{s: s})
	}
	if _, ok := s.driver.(PubSubBasic); ok {
		r.RegisterService(s.failed.desc(&pubsubv1.PubSub_ServiceDesc), &pubSubService{s: s})
	}
	healthpb.RegisterHealthServer(r, s.health)
	reflection.Register(r)
}

// GRPC returns the underlying gRPC server.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Shutdown drains in-flight calls for up to grace, stops the gRPC server and
// closes the driver.
func (s *Server) Shutdown(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.drain(ctx)
	s.stopDriver(ctx)
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
	}
}

func (s *Server) serviceNames() []string {
	var names []string
	for name := range s.grpc.GetServiceInfo() {
		if strings.HasPrefix(name, "prism.") && name != lifecyclev1.Lifecycle_ServiceDesc.ServiceName {
			names = append(names, name)
		}
	}
	return names
}

func (s *Server) setDataHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	for _, name := range s.serviceNames() {
		s.health.SetServingStatus(name, st)
	}
}

// enterStream admits a streaming data call: as enter, and it counts as an
// open stream until the returned func is called.
func (s *Server) enterStream() (func(), error) {
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	s.streams.Add(1)
	return func() { s.streams.Add(-1); leave() }, nil
}

// enter admits a data call: only a started plugin serves data. The call
// counts as in flight until the returned func is called.
func (s *Server) enter() (func(), error) {
	switch st := state(s.state.Load()); st {
	case stateStarted:
	case stateDraining, stateStopped:
		return nil, status.Errorf(codes.Unavailable, "plugin is %s: it accepts no new calls", st)
	default:
		return nil, status.Errorf(codes.FailedPrecondition, "plugin is %s: call Initialize and Start first", st)
	}
	s.inflight.Add(1)
	s.active.Add(1)
	// Re-check: Drain may have begun between the load and Add.
	if st := state(s.state.Load()); st != stateStarted {
		s.active.Add(-1)
		s.inflight.Done()
		return nil, status.Errorf(codes.Unavailable, "plugin is %s: it accepts no new calls", st)
	}
	return func() { s.active.Add(-1); s.inflight.Done() }, nil
}

// drain moves to draining and waits for in-flight calls until ctx ends.
func (s *Server) drain(ctx context.Context) int64 {
	s.mu.Lock()
	if st := state(s.state.Load()); st == stateStarted {
		s.state.Store(int32(stateDraining))
		close(s.draining)
		s.setDataHealth(healthpb.HealthCheckResponse_NOT_SERVING)
		s.log.Info("draining")
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return 0
	case <-ctx.Done():
		return s.active.Load()
	}
}

func (s *Server) stopDriver(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if state(s.state.Load()) == stateStopped {
		return nil
	}
	prev := state(s.state.Load())
	s.state.Store(int32(stateStopped))
	s.setDataHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	if prev == stateNew {
		return nil
	}
	s.log.Info("stopping")
	return s.driver.Close(ctx)
}

func requestID(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDKey); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	if id := requestID(ctx); id != "" {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(RequestIDKey, id))
	}
	resp, err := h(ctx, req)
	s.logCall(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	if id := requestID(ss.Context()); id != "" {
		ss.SetTrailer(metadata.Pairs(RequestIDKey, id))
	}
	err := h(srv, ss)
	s.logCall(ss.Context(), info.FullMethod, start, err)
	return err
}

func (s *Server) logCall(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelDebug
	if code == codes.Internal || code == codes.Unknown || code == codes.DataLoss {
		level = slog.LevelError
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{slog.String("method", method), slog.String("code", code.String()), slog.Duration("duration", time.Since(start))}
	if id := requestID(ctx); id != "" {
		attrs = append(attrs, slog.String("request_id", id))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	s.log.LogAttrs(ctx, level, "call", attrs...)
}

type lifecycleService struct {
	lifecyclev1.UnimplementedLifecycleServer
	s *Server
}

func (l *lifecycleService) Describe(context.Context, *lifecyclev1.DescribeRequest) (*lifecyclev1.DescribeResponse, error) {
	d := l.s.driver.Describe()
	lim := l.s.driver.Limits().withDefaults()
	info := maps.Clone(d.Info)
	if info == nil {
		info = map[string]string{}
	}
	info["sdk"] = "go/" + Version
	resp := &lifecyclev1.DescribeResponse{
		Name: d.Name, Version: d.Version, ProtocolVersion: handshake.ProtocolVersion, Info: info,
		Limits: &lifecyclev1.Limits{
			MaxKeyBytes: lim.MaxKeyBytes, MaxValueBytes: lim.MaxValueBytes, MaxBatchSize: lim.MaxBatchSize,
			MaxPageSize: lim.MaxPageSize, MaxTopicBytes: lim.MaxTopicBytes, MaxPayloadBytes: lim.MaxPayloadBytes,
		},
	}
	for _, c := range Capabilities(l.s.driver) {
		resp.Capabilities = append(resp.Capabilities, &lifecyclev1.Capability{Name: string(c), InterfaceVersion: "v1"})
	}
	if _, ok := l.s.driver.(PubSubBasic); ok {
		resp.SlowConsumer = slowConsumerProto(policyOf(l.s.driver))
	}
	return resp, nil
}

func (l *lifecycleService) Initialize(ctx context.Context, req *lifecyclev1.InitializeRequest) (*lifecyclev1.InitializeResponse, error) {
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := state(s.state.Load()); st != stateNew && st != stateInitialized {
		return nil, status.Errorf(codes.FailedPrecondition, "initialize: plugin is %s; Initialize is allowed only before Start", st)
	}
	cfg := Config{Values: req.GetConfig().AsMap(), Credentials: req.GetCredentials(), Namespace: req.GetNamespace()}
	if cfg.Values == nil {
		cfg.Values = map[string]any{}
	}
	if s.tracing != nil {
		cfg.TracerProvider = s.tracing.Provider()
	}
	if err := s.driver.Init(ctx, cfg); err != nil {
		s.log.Warn("initialize failed", "error", err.Error())
		return nil, ToStatus(fmt.Errorf("initialize: %w", err))
	}
	s.state.Store(int32(stateInitialized))
	s.log.Info("initialized", "namespace", cfg.Namespace, "config_keys", len(cfg.Values), "credentials", len(cfg.Credentials))
	return &lifecyclev1.InitializeResponse{}, nil
}

func (l *lifecycleService) Start(context.Context, *lifecyclev1.StartRequest) (*lifecyclev1.StartResponse, error) {
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st := state(s.state.Load()); st {
	case stateInitialized:
	case stateStarted:
		return &lifecyclev1.StartResponse{}, nil
	case stateNew:
		return nil, status.Errorf(codes.FailedPrecondition, "start: plugin is %s; call Initialize first", st)
	default:
		return nil, status.Errorf(codes.FailedPrecondition, "start: plugin is %s; Start is allowed only after Initialize and before Drain and Stop", st)
	}
	s.state.Store(int32(stateStarted))
	s.setDataHealth(healthpb.HealthCheckResponse_SERVING)
	s.log.Info("started")
	return &lifecyclev1.StartResponse{}, nil
}

func (l *lifecycleService) Drain(ctx context.Context, req *lifecyclev1.DrainRequest) (*lifecyclev1.DrainResponse, error) {
	if req.GetDeadline() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.GetDeadline().AsDuration())
		defer cancel()
	}
	return &lifecyclev1.DrainResponse{InFlight: l.s.drain(ctx)}, nil
}

func (l *lifecycleService) Stop(ctx context.Context, _ *lifecyclev1.StopRequest) (*lifecyclev1.StopResponse, error) {
	l.s.drain(ctx)
	if err := l.s.stopDriver(ctx); err != nil {
		return nil, ToStatus(fmt.Errorf("stop: %w", err))
	}
	return &lifecyclev1.StopResponse{}, nil
}

func (l *lifecycleService) HealthCheck(ctx context.Context, _ *lifecyclev1.HealthCheckRequest) (*lifecyclev1.HealthCheckResponse, error) {
	// The standard details are counted when the call arrives, before the
	// backend probe, which may itself wait on a hung backend: hosts watch
	// them to see that calls stuck on a hung backend do not pile up.
	standard := l.s.standardDetails()
	goroutines := strconv.Itoa(runtime.NumGoroutine())
	st := state(l.s.state.Load())
	if st == stateNew || st == stateStopped {
		return &lifecyclev1.HealthCheckResponse{Status: lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY,
			Message: "plugin is " + st.String(), Details: standard}, nil
	}
	h := l.s.driver.Health(ctx)
	details := maps.Clone(h.Details)
	if details == nil {
		details = map[string]string{}
	}
	details[GoroutinesDetail] = goroutines
	// The SDK owns the standard details: a driver's own "prism." keys are
	// replaced.
	maps.Copy(details, standard)
	resp := &lifecyclev1.HealthCheckResponse{Message: h.Message, Details: details}
	switch h.Status {
	case Healthy:
		resp.Status = lifecyclev1.HealthCheckResponse_STATUS_HEALTHY
	case Degraded:
		resp.Status = lifecyclev1.HealthCheckResponse_STATUS_DEGRADED
	default:
		resp.Status = lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY
	}
	if st == stateDraining && resp.Status == lifecyclev1.HealthCheckResponse_STATUS_HEALTHY {
		resp.Status = lifecyclev1.HealthCheckResponse_STATUS_DEGRADED
		resp.Message = "draining"
	}
	return resp, nil
}

// standardDetails returns the standard health details (proto/detail) as
// they are now.
func (s *Server) standardDetails() map[string]string {
	return map[string]string{
		detail.InflightCalls:            strconv.FormatInt(s.active.Load(), 10),
		detail.OpenStreams:              strconv.FormatInt(s.streams.Load(), 10),
		detail.AuthorizationHeadersSeen: strconv.FormatInt(s.trip.seen.Load(), 10),
	}
}
