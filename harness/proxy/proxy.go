// Package proxy runs the reference proxy (prism-proxy) as a child process
// for the suites: it writes a proxy config for a plugin binary and its
// backend instance's config, starts the proxy, waits for its gRPC health
// (polling with a deadline, never a sleep) and returns a handle with the
// address, a connection, targets per namespace, and fault injection:
// SIGKILL or SIGSTOP a plugin process the proxy supervises, SIGTERM the proxy.
//
// Credentials are never written into the config: each is written to a file
// of its own (mode 0600) in the run's folder and referenced as {file: path}.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/reference/auth"
	refproxy "github.com/prism-suite/prism/reference/proxy"
	"github.com/prism-suite/prism/reference/registry"
)

// Namespace is one namespace the proxy serves and its plugin.
type Namespace struct {
	// Name is the namespace name clients send.
	Name string
	// Patterns are the patterns the namespace serves (default keyvalue).
	Patterns []string
	// Plugin is the plugin binary.
	Plugin string
	// Builtin, instead of Plugin, names a driver linked into the proxy
	// (the plugin block's "builtin:").
	Builtin string
	// Args are the plugin's arguments.
	Args []string
	// Config is the plugin's Initialize config.
	Config map[string]any
	// Credentials are the plugin's Initialize credentials; they are written
	// to files, never into the config.
	Credentials map[string]string
	// Instance separates namespaces whose plugin blocks are otherwise
	// identical into processes of their own (see reference/proxy.Config).
	Instance string
	// Slots, instead of Plugin, fills a pattern's slots by name (the
	// registry pattern: "registry" and "messaging").
	Slots map[string]Slot
	// Registry is the registry pattern's settings.
	Registry *registry.Config
}

// Slot is the plugin of one slot of a namespace.
type Slot struct {
	Plugin      string
	Builtin     string
	Args        []string
	Config      map[string]any
	Credentials map[string]string
	Instance    string
}

// Options configure Start. Use [DefaultOptions] and change fields.
type Options struct {
	// Binary is the prism-proxy binary.
	Binary string
	// Dir receives the config, credential files and the address file
	// ("" makes a temp dir that Stop removes).
	Dir string
	// StartTimeout bounds the wait for the proxy to serve.
	StartTimeout time.Duration
	// DrainTimeout is the proxy's drain deadline on SIGTERM.
	DrainTimeout time.Duration
	// StopGrace is how long Stop waits after the drain deadline before SIGKILL.
	StopGrace time.Duration
	// HealthInterval is how often the proxy health-checks its plugins.
	HealthInterval time.Duration
	// InitialBackoff and MaxBackoff are the proxy's plugin restart backoff.
	InitialBackoff, MaxBackoff time.Duration
	// LogLevel is the proxy's log level.
	LogLevel string
	// Env is added to the proxy's environment, which its plugins inherit.
	Env []string
	// StderrLimit is how many bytes of the proxy's stderr are kept (the tail).
	StderrLimit int
	// StderrTee, when set, also receives the proxy's stderr.
	StderrTee io.Writer
	// Auth, when set, is written as the config's auth: section: the proxy
	// then authenticates every data call (see reference/auth). nil leaves
	// auth off. An HMAC secret must come from an env var or a file.
	Auth *auth.Config
	// Limits, when set, is written as the config's limits: section (start
	// from refproxy.DefaultLimits and change fields); nil keeps the proxy's
	// defaults.
	Limits *refproxy.Limits
	// Admin, when set, is written as the config's admin: section (it needs
	// Auth): the proxy then serves the admin API (prism.admin.v1) at
	// [Proxy.AdminAddr]. Relative paths in it are relative to Dir.
	Admin *refproxy.AdminConfig
}

// DefaultOptions returns: bin/prism-proxy, 30 s to start, 10 s drain, 5 s
// stop grace, 1 s health interval, restart backoff 200 ms to 5 s, 256 KiB
// of stderr kept.
func DefaultOptions() Options {
	return Options{Binary: "bin/prism-proxy", StartTimeout: 30 * time.Second, DrainTimeout: 10 * time.Second,
		StopGrace: 5 * time.Second, HealthInterval: time.Second, InitialBackoff: 200 * time.Millisecond,
		MaxBackoff: 5 * time.Second, LogLevel: "info", StderrLimit: 256 << 10}
}

// Proxy is a running prism-proxy.
type Proxy struct {
	// Addr is the gRPC address (127.0.0.1:port).
	Addr string
	// MetricsAddr is the HTTP address of /metrics and /status.
	MetricsAddr string
	// Conn is a connection to Addr.
	Conn *grpc.ClientConn
	// ConfigPath is the proxy config that was written.
	ConfigPath string
	// ReadyTime is the time from exec to gRPC health SERVING.
	ReadyTime time.Duration
	// Version is the version the proxy wrote in its address file ("" from
	// a proxy too old to write one).
	Version string
	// AdminAddr is the admin API's address, and AdminConn a connection to
	// it, when Options.Admin is set.
	AdminAddr string
	AdminConn *grpc.ClientConn

	opts       Options
	namespaces []Namespace
	cmd        *exec.Cmd
	stderr     *tail
	exited     chan struct{}
	waitErr    error
	tmpDir     string
}

// Start writes the config, starts the proxy and returns once it answers gRPC
// health with SERVING. On error it returns the partial *Proxy as well (it may
// be nil), so the caller can read its stderr and Stop it.
func Start(ctx context.Context, opts Options, namespaces ...Namespace) (*Proxy, error) {
	d := DefaultOptions()
	if opts.Binary == "" {
		opts.Binary = d.Binary
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = d.StartTimeout
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = d.DrainTimeout
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = d.StopGrace
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = d.HealthInterval
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = d.InitialBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = d.MaxBackoff
	}
	if opts.LogLevel == "" {
		opts.LogLevel = d.LogLevel
	}
	if opts.StderrLimit <= 0 {
		opts.StderrLimit = d.StderrLimit
	}
	bin, err := filepath.Abs(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("start proxy: %w (build it with go build -o bin/ ./reference/cmd/prism-proxy)", err)
	}
	p := &Proxy{opts: opts, namespaces: cloneNamespaces(namespaces), stderr: &tail{limit: opts.StderrLimit}, exited: make(chan struct{})}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "prism-proxy-"); err != nil {
			return nil, fmt.Errorf("start proxy: %w", err)
		}
		p.tmpDir = dir
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	if p.ConfigPath, err = writeConfig(dir, opts, namespaces); err != nil {
		p.cleanup()
		return nil, err
	}
	addrFile := filepath.Join(dir, "addrs.json")
	_ = os.Remove(addrFile)

	start := time.Now()
	p.cmd = exec.Command(bin, "--config", p.ConfigPath, "--addr-file", addrFile)
	p.cmd.Env = append(os.Environ(), opts.Env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var errw io.Writer = p.stderr
	if opts.StderrTee != nil {
		errw = io.MultiWriter(p.stderr, opts.StderrTee)
	}
	p.cmd.Stdout, p.cmd.Stderr = errw, errw
	if err := p.cmd.Start(); err != nil {
		p.cleanup()
		return nil, fmt.Errorf("start proxy %s: %w", bin, err)
	}
	go func() {
		err := p.cmd.Wait()
		p.waitErr = err
		close(p.exited)
	}()

	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	addrs, err := p.waitAddrs(ctx, addrFile)
	if err != nil {
		return p, err
	}
	p.Addr, p.MetricsAddr, p.Version, p.AdminAddr = addrs.GRPC, addrs.Metrics, addrs.Version, addrs.Admin
	if p.Conn, err = target.Dial(p.Addr); err != nil {
		return p, fmt.Errorf("dial proxy at %s: %w", p.Addr, err)
	}
	if opts.Admin != nil {
		if p.AdminAddr == "" {
			return p, fmt.Errorf("start proxy: the config has admin: but the proxy wrote no admin address (too old a prism-proxy?)")
		}
		if p.AdminConn, err = target.Dial(p.AdminAddr); err != nil {
			return p, fmt.Errorf("dial proxy admin API at %s: %w", p.AdminAddr, err)
		}
	}
	if err := p.WaitServing(ctx, ""); err != nil {
		return p, err
	}
	p.ReadyTime = time.Since(start)
	return p, nil
}

func writeConfig(dir string, opts Options, namespaces []Namespace) (string, error) {
	type plugin struct {
		Binary      string                        `yaml:"binary,omitempty"`
		Builtin     string                        `yaml:"builtin,omitempty"`
		Args        []string                      `yaml:"args,omitempty"`
		Config      map[string]any                `yaml:"config,omitempty"`
		Credentials map[string]refproxy.SecretRef `yaml:"credentials,omitempty"`
		Instance    string                        `yaml:"instance,omitempty"`
	}
	type ns struct {
		Name     string            `yaml:"name"`
		Patterns []string          `yaml:"patterns"`
		Plugin   *plugin           `yaml:"plugin,omitempty"`
		Slots    map[string]plugin `yaml:"slots,omitempty"`
		Registry *registry.Config  `yaml:"registry,omitempty"`
	}
	cfg := struct {
		Listen         string                `yaml:"listen"`
		MetricsListen  string                `yaml:"metrics_listen"`
		LogLevel       string                `yaml:"log_level"`
		DrainTimeout   string                `yaml:"drain_timeout"`
		HealthInterval string                `yaml:"health_interval"`
		Restart        map[string]string     `yaml:"restart"`
		Namespaces     []ns                  `yaml:"namespaces"`
		Auth           *auth.Config          `yaml:"auth,omitempty"`
		Limits         *refproxy.Limits      `yaml:"limits,omitempty"`
		Admin          *refproxy.AdminConfig `yaml:"admin,omitempty"`
	}{
		Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", LogLevel: opts.LogLevel,
		DrainTimeout: opts.DrainTimeout.String(), HealthInterval: opts.HealthInterval.String(),
		Restart: map[string]string{"initial_backoff": opts.InitialBackoff.String(), "max_backoff": opts.MaxBackoff.String()},
		Auth:    opts.Auth,
		Limits:  opts.Limits,
		Admin:   opts.Admin,
	}
	block := func(name string, s Slot) (plugin, error) {
		pl := plugin{Builtin: s.Builtin, Args: s.Args, Config: s.Config, Instance: s.Instance}
		if s.Builtin == "" {
			bin, err := filepath.Abs(s.Plugin)
			if err != nil {
				return plugin{}, fmt.Errorf("write proxy config: %w", err)
			}
			pl.Binary = bin
		}
		for k, v := range s.Credentials {
			path := filepath.Join(dir, fmt.Sprintf("credential-%s-%s", name, k))
			if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
				return plugin{}, fmt.Errorf("write credential file: %w", err)
			}
			if pl.Credentials == nil {
				pl.Credentials = map[string]refproxy.SecretRef{}
			}
			pl.Credentials[k] = refproxy.SecretRef{File: path}
		}
		return pl, nil
	}
	for _, n := range namespaces {
		pats := n.Patterns
		if len(pats) == 0 {
			pats = []string{string(refproxy.KeyValue)}
		}
		out := ns{Name: n.Name, Patterns: pats, Registry: n.Registry}
		if len(n.Slots) > 0 {
			out.Slots = map[string]plugin{}
			for slot, s := range n.Slots {
				pl, err := block(n.Name+"-"+slot, s)
				if err != nil {
					return "", err
				}
				out.Slots[slot] = pl
			}
		} else {
			pl, err := block(n.Name, Slot{Plugin: n.Plugin, Builtin: n.Builtin, Args: n.Args, Config: n.Config, Credentials: n.Credentials, Instance: n.Instance})
			if err != nil {
				return "", err
			}
			out.Plugin = &pl
		}
		cfg.Namespaces = append(cfg.Namespaces, out)
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("write proxy config: %w", err)
	}
	path := filepath.Join(dir, "proxy.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("write proxy config: %w", err)
	}
	return path, nil
}

// waitAddrs polls for the address file the proxy writes once it listens.
func (p *Proxy) waitAddrs(ctx context.Context, path string) (refproxy.Addrs, error) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			var a refproxy.Addrs
			if err := json.Unmarshal(b, &a); err != nil {
				return a, fmt.Errorf("read proxy addr file: %w", err)
			}
			return a, nil
		}
		select {
		case <-p.exited:
			return refproxy.Addrs{}, fmt.Errorf("start proxy: it exited (%v) before serving; stderr:\n%s", p.waitErr, p.Stderr())
		case <-ctx.Done():
			return refproxy.Addrs{}, fmt.Errorf("start proxy: not listening within %v; stderr:\n%s", p.opts.StartTimeout, p.Stderr())
		case <-tick.C:
		}
	}
}

// WaitServing polls the proxy's gRPC health for service (a namespace, or ""
// for the proxy) until SERVING, the proxy exits, or ctx ends.
func (p *Proxy) WaitServing(ctx context.Context, service string) error {
	hc := healthpb.NewHealthClient(p.Conn)
	backoff := 2 * time.Millisecond
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{Service: service})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("status %s", resp.GetStatus())
		}
		select {
		case <-p.exited:
			return fmt.Errorf("wait for proxy health of %q: the proxy exited (%v); stderr:\n%s", service, p.waitErr, p.Stderr())
		case <-ctx.Done():
			return fmt.Errorf("wait for proxy health of %q: %w (last: %v)", service, ctx.Err(), last)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

// Target returns a target for namespace ns through the proxy.
func (p *Proxy) Target(ns string) target.Target {
	return target.Target{Via: target.Proxy, Namespace: ns, Conn: p.Conn}
}

// Options returns the options the proxy was started with, defaults filled
// in, so a caller can start another proxy like it.
func (p *Proxy) Options() Options { return p.opts }

// Namespaces returns a copy of the namespaces the proxy was started with:
// changing their config maps does not change the proxy's.
func (p *Proxy) Namespaces() []Namespace { return cloneNamespaces(p.namespaces) }

func cloneNamespaces(nss []Namespace) []Namespace {
	out := make([]Namespace, len(nss))
	for i, n := range nss {
		n.Patterns = slices.Clone(n.Patterns)
		n.Args = slices.Clone(n.Args)
		n.Config = maps.Clone(n.Config)
		n.Credentials = maps.Clone(n.Credentials)
		if n.Slots != nil {
			slots := make(map[string]Slot, len(n.Slots))
			for k, s := range n.Slots {
				s.Args = slices.Clone(s.Args)
				s.Config = maps.Clone(s.Config)
				s.Credentials = maps.Clone(s.Credentials)
				slots[k] = s
			}
			n.Slots = slots
		}
		out[i] = n
	}
	return out
}

// Status reads the proxy's /status.
func (p *Proxy) Status(ctx context.Context) (refproxy.Status, error) {
	var s refproxy.Status
	if p.MetricsAddr == "" {
		return s, errors.New("read proxy status: the metrics address is off")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.MetricsAddr+"/status", nil)
	if err != nil {
		return s, fmt.Errorf("read proxy status: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("read proxy status: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("read proxy status: %w", err)
	}
	return s, nil
}

// Metrics reads the proxy's /metrics text.
func (p *Proxy) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.MetricsAddr+"/metrics", nil)
	if err != nil {
		return "", fmt.Errorf("read proxy metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("read proxy metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// PluginPID returns the pid of the plugin process serving namespace ns
// (its first slot), or an error when none is running.
func (p *Proxy) PluginPID(ctx context.Context, ns string) (int, error) {
	s, err := p.Status(ctx)
	if err != nil {
		return 0, err
	}
	for _, n := range s.Namespaces {
		if n.Name == ns && len(n.Slots) > 0 {
			if n.Slots[0].PID == 0 {
				return 0, fmt.Errorf("find plugin of %q: none is running (%s)", ns, n.Slots[0].State)
			}
			return n.Slots[0].PID, nil
		}
	}
	return 0, fmt.Errorf("find plugin of %q: no such namespace", ns)
}

// PluginBuiltin reports whether the plugin serving namespace ns (its first
// slot) is a builtin driver in the proxy's process, which has no process of
// its own to signal (its PID in /status is the proxy's).
func (p *Proxy) PluginBuiltin(ctx context.Context, ns string) (bool, error) {
	s, err := p.Status(ctx)
	if err != nil {
		return false, err
	}
	for _, n := range s.Namespaces {
		if n.Name == ns && len(n.Slots) > 0 {
			return n.Slots[0].Mode == "builtin", nil
		}
	}
	return false, fmt.Errorf("find plugin of %q: no such namespace", ns)
}

// PluginHealth returns what the proxy's last health check of the plugin
// serving namespace ns (its first slot) answered: "healthy", "degraded",
// "unhealthy", or "unknown" when the check failed or none has run yet. The
// proxy checks every Options.HealthInterval.
func (p *Proxy) PluginHealth(ctx context.Context, ns string) (string, error) {
	s, err := p.Status(ctx)
	if err != nil {
		return "", err
	}
	for _, n := range s.Namespaces {
		if n.Name == ns && len(n.Slots) > 0 {
			if n.Slots[0].Health == "" {
				return "unknown", nil
			}
			return n.Slots[0].Health, nil
		}
	}
	return "", fmt.Errorf("read plugin health of %q: no such namespace", ns)
}

// SignalPlugin sends sig to the plugin process serving ns and returns its pid;
// for SIGSTOP it returns once every thread of the plugin has stopped.
func (p *Proxy) SignalPlugin(ctx context.Context, ns string, sig syscall.Signal) (int, error) {
	if b, err := p.PluginBuiltin(ctx, ns); err != nil {
		return 0, err
	} else if b {
		// Its pid is the proxy's own: never signal that.
		return 0, fmt.Errorf("signal plugin of %q: it is a builtin driver in the proxy's process", ns)
	}
	pid, err := p.PluginPID(ctx, ns)
	if err != nil {
		return 0, err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return pid, fmt.Errorf("signal plugin %d: %w", pid, err)
	}
	if sig == syscall.SIGSTOP {
		// Until every thread has stopped, a call sent now may still be answered.
		return pid, backend.WaitStopped(pid, 5*time.Second)
	}
	return pid, nil
}

// KillPlugin sends SIGKILL to the plugin process serving ns (fault
// injection) and returns its pid.
func (p *Proxy) KillPlugin(ctx context.Context, ns string) (int, error) {
	return p.SignalPlugin(ctx, ns, syscall.SIGKILL)
}

// Terminate sends SIGTERM to the proxy: it drains and exits.
func (p *Proxy) Terminate() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal proxy: %w", err)
	}
	return nil
}

// Exited is closed when the proxy process has exited.
func (p *Proxy) Exited() <-chan struct{} { return p.exited }

// ExitCode returns the exit code once the proxy has exited (-1 for a signal).
func (p *Proxy) ExitCode() int {
	<-p.exited
	return p.cmd.ProcessState.ExitCode()
}

// PID is the proxy's process id.
func (p *Proxy) PID() int { return p.cmd.Process.Pid }

// Stderr returns the kept tail of the proxy's stderr (its log and its
// plugins' logs).
func (p *Proxy) Stderr() string { return p.stderr.String() }

// Stop sends SIGTERM and waits for the proxy to drain and exit, killing it
// when it has not exited within the drain deadline plus the stop grace. It
// removes the temp dir Start made. A proxy that had to be killed, or exited
// non-zero, is an error.
func (p *Proxy) Stop(ctx context.Context) error {
	if p == nil {
		return nil
	}
	defer p.cleanup()
	if p.AdminConn != nil {
		_ = p.AdminConn.Close()
	}
	if p.Conn != nil {
		_ = p.Conn.Close()
	}
	if p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(p.opts.DrainTimeout + p.opts.StopGrace)
		defer t.Stop()
		select {
		case <-p.exited:
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.exited
			return fmt.Errorf("stop proxy: no exit within %v of SIGTERM; killed", p.opts.DrainTimeout+p.opts.StopGrace)
		case <-ctx.Done():
			_ = p.cmd.Process.Kill()
			<-p.exited
			return fmt.Errorf("stop proxy: %w; killed", ctx.Err())
		}
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("stop proxy: exit code %d", code)
	}
	return nil
}

func (p *Proxy) cleanup() {
	if p.tmpDir != "" {
		_ = os.RemoveAll(p.tmpDir)
	}
}

// tail keeps the last limit bytes written to it.
type tail struct {
	mu    sync.Mutex
	limit int
	buf   []byte
	lost  int
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.lost += over
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost > 0 {
		return fmt.Sprintf("[%d earlier bytes dropped]\n%s", t.lost, strings.TrimLeft(string(t.buf), "\n"))
	}
	return string(t.buf)
}
