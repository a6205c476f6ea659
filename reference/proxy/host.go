package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/prism-suite/prism/proto/capability"
	"github.com/prism-suite/prism/proto/handshake"
	plugin "github.com/prism-suite/prism/proto/launch"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/proto/tracing"
)

// backoffDelay returns the delay before restart number attempt (0-based):
// d = min(initial × 2^attempt, max), drawn uniformly from [d/2, d] using
// rnd (a number in [0, 1)).
func backoffDelay(b Backoff, attempt int, rnd func() float64) time.Duration {
	d := b.MaxBackoff
	if attempt < 32 {
		if x := b.InitialBackoff << attempt; x > 0 && x < b.MaxBackoff {
			d = x
		}
	}
	return d/2 + time.Duration(rnd()*float64(d/2))
}

// hostState is where a plugin host is in its life.
type hostState string

const (
	stateStarting hostState = "starting"
	stateUp       hostState = "up"
	stateDown     hostState = "down"    // crashed or failed to start; a restart is scheduled
	stateRefused  hostState = "refused" // will not be restarted: config or capabilities are wrong
	stateStopped  hostState = "stopped"
)

// slotUse is one namespace slot a host serves.
type slotUse struct {
	ns   *namespace
	slot slotSpec
	// refused, when not empty, says why the plugin cannot serve this slot.
	refused atomic.Pointer[string]
	host    *host
}

func (u *slotUse) refusal() string {
	if r := u.refused.Load(); r != nil {
		return *r
	}
	return ""
}

// live is a started plugin, a process or a builtin driver, and its
// long-lived connection.
type live struct {
	proc    *plugin.Process // nil for a builtin
	conn    grpc.ClientConnInterface
	lc      lifecyclev1.LifecycleClient
	desc    *lifecyclev1.DescribeResponse
	builtin bool
	started time.Time // a builtin's start, for its ready time
}

// exited is closed when the plugin process exits; a builtin has no
// process, and the channel is nil.
func (lv *live) exited() <-chan struct{} {
	if lv.proc == nil {
		return nil
	}
	return lv.proc.Exited()
}

// pid is the plugin's process id: the proxy's own for a builtin.
func (lv *live) pid() int {
	if lv.proc == nil {
		return os.Getpid()
	}
	return lv.proc.PID()
}

// readyTime is how long the plugin took to serve.
func (lv *live) readyTime() time.Duration {
	if lv.proc == nil {
		return time.Since(lv.started)
	}
	return lv.proc.ReadyTime
}

// mode is "process" or "builtin", as /status and the metrics say.
func (lv *live) mode() string { return modeOf(lv.builtin) }

func modeOf(builtin bool) string {
	if builtin {
		return "builtin"
	}
	return "process"
}

// host supervises one plugin process: it launches it, runs Describe,
// Initialize and Start, health-checks it, and restarts it with backoff when
// it crashes. Every namespace slot whose plugin block is identical shares it.
type host struct {
	id   string
	spec *PluginSpec
	// builtin is the linked driver of a builtin plugin block, else nil.
	builtin *builtin
	cfg     *Config
	// uses are the namespace slots the host serves; the admin API adds and
	// removes them while the host runs (usesMu; read with usesNow).
	usesMu sync.Mutex
	uses   []*slotUse
	// calls counts the forwarded calls in flight on the host, so a host no
	// namespace uses any more is stopped after they finish.
	calls atomic.Int64
	log   *slog.Logger
	m     *metrics
	rnd   func() float64
	onChg func()
	// stderr receives the plugin's stderr, line by line.
	stderr io.Writer
	// tracing is the proxy's (nil: off), for a builtin's SDK server.
	tracing *tracing.Tracing

	cur atomic.Pointer[live]

	mu        sync.Mutex
	state     hostState
	lastErr   string
	restarts  int
	pid       int
	nextStart time.Time
	health    string

	settled    chan struct{}
	settleOnce sync.Once
	cancel     context.CancelFunc
	done       chan struct{}
}

// usesNow returns the host's slot uses as they are now.
func (h *host) usesNow() []*slotUse {
	h.usesMu.Lock()
	defer h.usesMu.Unlock()
	return slices.Clone(h.uses)
}

// addUse adds a namespace slot to the host. A host that is up already
// checks the slot's capabilities against what its plugin declared (a
// starting one checks them in bringUp).
func (h *host) addUse(u *slotUse) {
	h.usesMu.Lock()
	h.uses = append(h.uses, u)
	h.usesMu.Unlock()
	if lv := h.cur.Load(); lv != nil && lv.desc != nil {
		h.admit(capability.Declared(lv.desc), lv.desc.GetName(), u)
	}
}

// removeUse removes a namespace slot and returns how many remain.
func (h *host) removeUse(u *slotUse) int {
	h.usesMu.Lock()
	defer h.usesMu.Unlock()
	h.uses = slices.DeleteFunc(h.uses, func(x *slotUse) bool { return x == u })
	return len(h.uses)
}

// admit checks that the plugin declares what slot use u needs, and records
// the refusal when it does not; it reports whether u is accepted.
func (h *host) admit(declared capability.Set, plugin string, u *slotUse) bool {
	var missing []string
	for _, c := range u.slot.Requires {
		if !declared.Has(c) {
			missing = append(missing, string(c))
		}
	}
	if len(missing) > 0 {
		reason := fmt.Sprintf("namespace %q refused: plugin %q does not declare %s, which pattern %s needs",
			u.ns.Name, handshake.Truncate(plugin, handshake.TruncateLimit), strings.Join(missing, ", "), u.slot.Pattern)
		u.refused.Store(&reason)
		h.log.Error("namespace refused", "namespace", u.ns.Name, "slot", u.slot.Name, "reason", reason)
		return false
	}
	u.refused.Store(nil)
	return true
}

// initNamespace is the namespace sent in Initialize: the namespace's name
// when the process serves one namespace, else "" (it serves several).
func (h *host) initNamespace() string {
	name := ""
	for _, u := range h.usesNow() {
		if name != "" && u.ns.Name != name {
			return ""
		}
		name = u.ns.Name
	}
	return name
}

func (h *host) setState(s hostState, errText string) {
	// errText quotes plugin output (bounded where it is quoted); this is
	// the backstop for text passed through whole, such as a status message.
	errText = handshake.Truncate(errText, maxErrorBytes)
	h.mu.Lock()
	h.state, h.lastErr = s, errText
	h.mu.Unlock()
	for _, u := range h.usesNow() {
		up := 0.0
		if s == stateUp && u.refusal() == "" {
			up = 1
		}
		h.m.pluginUp.WithLabelValues(u.ns.Name, u.slot.Name).Set(up)
		if s != stateUp {
			h.m.setHealth(u.ns.Name, u.slot.Name, "down")
		}
	}
	if h.onChg != nil {
		h.onChg()
	}
}

func (h *host) settle() { h.settleOnce.Do(func() { close(h.settled) }) }

// start runs the supervisor until stop.
func (h *host) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.settled = make(chan struct{})
	h.settleOnce = sync.Once{} // a restart (admin RestartPlugin) settles again
	h.done = make(chan struct{})
	h.setState(stateStarting, "")
	go h.run(ctx)
}

// errPermanent marks a start failure a restart cannot fix.
type errPermanent struct{ error }

// shortError is an error whose text is cut to maxErrorBytes (for logs,
// client messages and /status); errors.As still sees what it wraps.
type shortError struct{ error }

func (e shortError) Error() string { return handshake.Truncate(e.error.Error(), maxErrorBytes) }

func (e shortError) Unwrap() error { return e.error }

func (h *host) run(ctx context.Context) {
	defer close(h.done)
	defer h.settle()
	attempt := 0
	for {
		var lv *live
		var err error
		if h.builtin != nil {
			h.log.Info("starting builtin driver", "builtin", h.builtin.name)
			lv, err = h.launchBuiltin(ctx)
		} else {
			h.log.Info("starting plugin", "binary", h.spec.Binary)
			lv, err = h.launch(ctx)
		}
		if ctx.Err() != nil {
			if lv != nil {
				h.cur.Store(lv) // shutdown stops it
			}
			return
		}
		var upSince time.Time
		if err != nil {
			err = shortError{err}
			var perm errPermanent
			if errors.As(err, &perm) {
				h.log.Error("plugin refused; it will not be restarted", "error", err.Error())
				h.setState(stateRefused, err.Error())
				h.settle()
				return
			}
			h.log.Error("plugin failed to start", "error", err.Error())
			h.setState(stateDown, err.Error())
		} else {
			h.mu.Lock()
			h.pid = lv.pid()
			h.mu.Unlock()
			h.cur.Store(lv)
			h.setState(stateUp, "")
			h.settle()
			upSince = time.Now()
			h.log.Info("plugin up", "pid", lv.pid(), "mode", lv.mode(), "plugin", lv.pluginName(), "version", lv.pluginVersion(),
				"ready", lv.readyTime().String())
			reason := h.watch(ctx, lv)
			if ctx.Err() != nil {
				return // shutdown stops the process
			}
			h.cur.Store(nil)
			if lv.proc != nil {
				lv.proc.Kill()
			} else {
				// No process to kill: the driver is stopped (its backend
				// released) and a fresh one starts after the backoff.
				stopBuiltin(lv)
			}
			h.mu.Lock()
			h.restarts++
			h.mu.Unlock()
			for _, u := range h.usesNow() {
				h.m.restarts.WithLabelValues(u.ns.Name, u.slot.Name).Inc()
			}
			if lv.proc != nil {
				h.log.Error("plugin down", "pid", lv.pid(), "reason", reason, "stderr_tail", handshake.TruncateTail(lv.proc.Stderr(), handshake.TruncateLimit))
			} else {
				h.log.Error("builtin driver down", "builtin", h.builtin.name, "reason", reason)
			}
			h.setState(stateDown, reason)
		}
		h.settle()
		if !upSince.IsZero() && time.Since(upSince) > h.cfg.Restart.MaxBackoff {
			attempt = 0 // it ran long enough: start the backoff over
		}
		delay := backoffDelay(h.cfg.Restart, attempt, h.rnd)
		attempt++
		h.mu.Lock()
		h.nextStart = time.Now().Add(delay)
		h.mu.Unlock()
		h.log.Info("restarting plugin", "in", delay.String(), "attempt", attempt)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		h.setState(stateStarting, h.lastError())
	}
}

func (h *host) lastError() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastErr
}

func (h *host) namespaceNames() []string {
	var out []string
	for _, u := range h.usesNow() {
		out = append(out, u.ns.Name+"/"+u.slot.Name)
	}
	return out
}

// launch starts a process and takes it through Describe, the capability
// check, Initialize and Start.
func (h *host) launch(ctx context.Context) (*live, error) {
	opts := plugin.DefaultOptions()
	opts.Args = h.spec.Args
	opts.StderrTee = h.stderr
	bin := h.cfg.resolve(h.spec.Binary)
	// The plugin exports where the proxy does, under its binary's name.
	opts.Env = h.cfg.Tracing.Env(filepath.Base(bin))
	p, err := plugin.Launch(ctx, bin, opts)
	if err != nil {
		_ = p.Stop(context.Background())
		return nil, fmt.Errorf("launch plugin: %w", err)
	}
	return h.bringUp(ctx, &live{proc: p, conn: p.Conn, lc: p.Lifecycle}, func() { _ = p.Stop(context.Background()) })
}

// bringUp takes a launched plugin (process or builtin) through Describe,
// the capability check, Initialize and Start; on failure it calls stop.
func (h *host) bringUp(ctx context.Context, lv *live, stop func()) (*live, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fail := func(err error) (*live, error) {
		stop()
		return nil, err
	}
	desc, err := lv.lc.Describe(cctx, &lifecyclev1.DescribeRequest{})
	if err != nil {
		return fail(fmt.Errorf("describe: %w", err))
	}
	declared := capability.Declared(desc)
	accepted := 0
	uses := h.usesNow()
	for _, u := range uses {
		if h.admit(declared, desc.GetName(), u) {
			accepted++
		}
	}
	if accepted == 0 {
		why := "no namespace uses it any more"
		if len(uses) > 0 {
			why = uses[0].refusal()
		}
		return fail(errPermanent{fmt.Errorf("plugin %q serves no namespace: %s", handshake.Truncate(desc.GetName(), handshake.TruncateLimit), why)})
	}
	creds, err := h.cfg.credentials(h.spec)
	if err != nil {
		return fail(fmt.Errorf("read credentials: %w", err))
	}
	cfg, err := structpb.NewStruct(h.spec.Config)
	if err != nil {
		return fail(errPermanent{fmt.Errorf("encode config: %w", err)})
	}
	_, err = lv.lc.Initialize(cctx, &lifecyclev1.InitializeRequest{Config: cfg, Credentials: creds, Namespace: h.initNamespace()})
	if err != nil {
		err = fmt.Errorf("initialize: %w", err)
		if status.Code(err) == codes.InvalidArgument {
			err = errPermanent{err}
			for _, u := range h.usesNow() {
				reason := fmt.Sprintf("namespace %q refused: its plugin rejected the config: %s", u.ns.Name,
					handshake.Truncate(status.Convert(err).Message(), maxErrorBytes))
				u.refused.Store(&reason)
			}
		}
		return fail(err)
	}
	if _, err := lv.lc.Start(cctx, &lifecyclev1.StartRequest{}); err != nil {
		return fail(fmt.Errorf("start: %w", err))
	}
	lv.desc = desc
	return lv, nil
}

// watch health-checks the plugin until its process exits, it stops
// answering three health checks in a row (a process is then killed, a
// builtin stopped), or ctx ends.
func (h *host) watch(ctx context.Context, lv *live) string {
	t := time.NewTicker(h.cfg.HealthInterval)
	defer t.Stop()
	fails := 0
	h.checkHealth(ctx, lv)
	for {
		select {
		case <-ctx.Done():
			return "shutdown"
		case <-lv.exited():
			return "plugin process exited"
		case <-t.C:
			if err := h.checkHealth(ctx, lv); err != nil {
				fails++
				h.log.Warn("plugin health check failed", "pid", lv.pid(), "mode", lv.mode(), "error", err.Error(), "in_a_row", fails)
				if fails >= 3 {
					if lv.builtin {
						return fmt.Sprintf("builtin driver stopped answering health checks (%v); stopped", err)
					}
					return fmt.Sprintf("plugin stopped answering health checks (%v); killed", err)
				}
				continue
			}
			fails = 0
		}
	}
}

func (h *host) checkHealth(ctx context.Context, lv *live) error {
	hctx, cancel := context.WithTimeout(ctx, min(h.cfg.HealthInterval, 2*time.Second))
	defer cancel()
	resp, err := lv.lc.HealthCheck(hctx, &lifecyclev1.HealthCheckRequest{})
	st := "unknown"
	if err == nil {
		switch resp.GetStatus() {
		case lifecyclev1.HealthCheckResponse_STATUS_HEALTHY:
			st = "healthy"
		case lifecyclev1.HealthCheckResponse_STATUS_DEGRADED:
			st = "degraded"
		case lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY:
			st = "unhealthy"
		}
	}
	h.mu.Lock()
	changed := h.health != st
	h.health = st
	h.mu.Unlock()
	for _, u := range h.usesNow() {
		h.m.setHealth(u.ns.Name, u.slot.Name, st)
	}
	if changed && err == nil {
		h.log.Info("plugin health", "status", st, "message", resp.GetMessage())
	}
	if changed && h.onChg != nil {
		h.onChg() // the namespaces' gRPC health follows the plugin's
	}
	return err
}

// unhealthy reports whether the plugin's last HealthCheck answered
// UNHEALTHY: its namespaces are then NOT_SERVING though the process is up.
func (h *host) unhealthy() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.health == "unhealthy"
}

// stop ends supervision and drains and stops the process within ctx.
func (h *host) stop(ctx context.Context) {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	lv := h.cur.Swap(nil)
	h.setState(stateStopped, "")
	if lv == nil {
		return
	}
	deadline := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		deadline = max(time.Until(dl), 100*time.Millisecond)
	}
	dctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	if r, err := lv.lc.Drain(dctx, &lifecyclev1.DrainRequest{Deadline: durationpb.New(deadline)}); err != nil {
		h.log.Warn("drain plugin", "error", err.Error())
	} else if r.GetInFlight() > 0 {
		h.log.Warn("plugin drained with calls still in flight", "in_flight", r.GetInFlight())
	}
	if lv.proc == nil {
		if _, err := lv.lc.Stop(dctx, &lifecyclev1.StopRequest{}); err != nil {
			h.log.Warn("stop builtin driver", "error", err.Error())
		}
		h.log.Info("builtin driver stopped", "builtin", h.builtin.name)
		return
	}
	if err := lv.proc.Stop(dctx); err != nil {
		h.log.Warn("stop plugin", "error", err.Error())
	}
	h.log.Info("plugin stopped", "pid", lv.proc.PID())
}

// unavailable is the fast answer while the plugin is not up.
func (h *host) unavailable(ns string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	msg := fmt.Sprintf("namespace %q: its plugin is %s", ns, h.state)
	if h.lastErr != "" {
		msg += " (" + h.lastErr + ")"
	}
	if h.state == stateDown && !h.nextStart.IsZero() {
		if d := time.Until(h.nextStart); d > 0 {
			msg += fmt.Sprintf("; restart in %v", d.Round(time.Millisecond))
		}
	}
	return status.Error(codes.Unavailable, msg)
}

// snapshot returns what /status shows of the host.
func (h *host) snapshot() (state hostState, pid, restarts int, lastErr, health string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	pid = h.pid
	if h.cur.Load() == nil {
		pid = 0
	}
	return h.state, pid, h.restarts, h.lastErr, h.health
}

// stopBuiltin stops a builtin driver that is being replaced, within
// builtinStopTimeout: a driver hung in its backend cannot hold up the
// restart for longer.
func stopBuiltin(lv *live) {
	ctx, cancel := context.WithTimeout(context.Background(), builtinStopTimeout)
	defer cancel()
	_, _ = lv.lc.Stop(ctx, &lifecyclev1.StopRequest{})
}

func newRand() func() float64 {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15))
	var mu sync.Mutex
	return func() float64 { mu.Lock(); defer mu.Unlock(); return r.Float64() }
}

// maxErrorBytes bounds a plugin host's last error and refusal reasons, which
// clients read in Unavailable and FailedPrecondition messages and /status
// shows: each quotes plugin output at most handshake.TruncateLimit bytes at a
// time, and the whole is cut here.
const maxErrorBytes = 4 * handshake.TruncateLimit

// pluginName and pluginVersion are what the plugin's Describe said, as logs
// and /status quote them.
func (lv *live) pluginName() string {
	return handshake.Truncate(lv.desc.GetName(), handshake.TruncateLimit)
}

func (lv *live) pluginVersion() string {
	return handshake.Truncate(lv.desc.GetVersion(), handshake.TruncateLimit)
}

// syncWriter serialises writes to w, so the proxy's log lines and the
// plugins' stderr lines never interleave mid-line.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// maxStderrLine bounds one line of a plugin's stderr as the proxy passes it
// on: the rest of a longer line is dropped and counted.
const maxStderrLine = 4 << 10

// lineWriter buffers a plugin's stderr and passes it on in whole lines, each
// at most maxStderrLine bytes (a longer one ends with "…[N bytes]").
type lineWriter struct {
	mu      sync.Mutex
	out     io.Writer
	buf     []byte
	dropped int // bytes of the current line dropped so far
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if room := maxStderrLine - len(l.buf); room > 0 {
			take := min(room, len(chunk))
			l.buf = append(l.buf, chunk[:take]...)
			l.dropped += len(chunk) - take
		} else {
			l.dropped += len(chunk)
		}
		if i < 0 {
			break
		}
		if l.dropped > 0 {
			l.buf = fmt.Appendf(l.buf, "…[%d bytes]", len(l.buf)+l.dropped)
		}
		l.buf = append(l.buf, '\n')
		_, _ = l.out.Write(l.buf)
		l.buf, l.dropped = l.buf[:0], 0
		b = b[i+1:]
	}
	return n, nil
}
