// Package launch is the host side of the plugin protocol (PROTOCOL.md §1–§5):
// it launches a Prism plugin binary as a child process and drives its
// lifecycle. It sets the magic and network variables, reads the handshake
// line with a deadline, dials the socket, polls gRPC health until SERVING
// (never a sleep), and stops the plugin (Stop, stdin closed, then SIGKILL to
// its process group after a grace period). The plugin's stderr is kept for
// reports and errors.
//
// It is the one launcher: the reference proxy hosts its plugins with it and
// the harness (harness/plugin) launches the plugin under test with it.
package launch

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/proto/handshake"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// MaxMessageBytes is the largest gRPC message the host sends or accepts
// (the protocol's, [handshake.MaxMessageBytes]).
const MaxMessageBytes = handshake.MaxMessageBytes

// MaxHandshakeBytes bounds the handshake line; a longer line is refused
// without reading the rest of it.
const MaxHandshakeBytes = 4 << 10

// waitDelay bounds how long the launcher waits, once the plugin has exited,
// for its stdout and stderr pipes to close (a process that escaped the
// plugin's process group may hold them).
const waitDelay = time.Second

// Options configure Launch. Use [DefaultOptions] and change fields.
type Options struct {
	// Args are passed to the plugin binary.
	Args []string
	// Env is added to the host's environment for the plugin.
	Env []string
	// Network asks the plugin for "unix" (default) or "tcp".
	Network string
	// HandshakeTimeout bounds the wait for the handshake line.
	HandshakeTimeout time.Duration
	// HealthTimeout bounds the wait for gRPC health SERVING after the handshake.
	HealthTimeout time.Duration
	// StopGrace is how long Stop waits for a clean exit before SIGKILL.
	StopGrace time.Duration
	// StderrLimit is how many bytes of the plugin's stderr are kept (the tail).
	StderrLimit int
	// StderrTee, when set, also receives everything the plugin writes to stderr.
	StderrTee io.Writer
	// DialOptions are added to [DialOptions] for the connection to the
	// plugin (the harness's tracing).
	DialOptions []grpc.DialOption
}

// DefaultOptions returns the defaults: unix socket, 10 s handshake, 10 s
// health, 5 s stop grace, 64 KiB of stderr kept.
func DefaultOptions() Options {
	return Options{Network: "unix", HandshakeTimeout: 10 * time.Second, HealthTimeout: 10 * time.Second,
		StopGrace: 5 * time.Second, StderrLimit: 64 << 10}
}

// Process is a running plugin.
type Process struct {
	// Binary is the absolute path that was started.
	Binary string
	// Handshake is the parsed handshake line.
	Handshake handshake.Line
	// Conn is the gRPC connection to the plugin.
	Conn *grpc.ClientConn
	// Lifecycle is the plugin's lifecycle client.
	Lifecycle lifecyclev1.LifecycleClient
	// HandshakeTime is the time from exec to the handshake line; ReadyTime
	// from exec to health SERVING.
	HandshakeTime, ReadyTime time.Duration

	opts   Options
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	exited chan struct{}
	waitMu sync.Mutex
	err    error
}

// Launch starts binary and returns once the plugin answers gRPC health with
// SERVING. On error it returns the partial *Process too (it may be nil), so
// the caller can read its stderr and Stop it.
func Launch(ctx context.Context, binary string, opts Options) (*Process, error) {
	abs, err := filepath.Abs(binary)
	if err != nil {
		return nil, fmt.Errorf("launch plugin: %w", err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("launch plugin: %w", err)
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("launch plugin: %s is not an executable file", abs)
	}
	d := DefaultOptions()
	if opts.Network == "" {
		opts.Network = d.Network
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = d.HandshakeTimeout
	}
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = d.HealthTimeout
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = d.StopGrace
	}
	if opts.StderrLimit <= 0 {
		opts.StderrLimit = d.StderrLimit
	}

	p := &Process{Binary: abs, opts: opts, stderr: newTailBuffer(opts.StderrLimit), exited: make(chan struct{})}
	p.cmd = exec.Command(abs, opts.Args...)
	p.cmd.Env = append(os.Environ(), opts.Env...)
	p.cmd.Env = append(p.cmd.Env, handshake.EnvMagic+"="+handshake.MagicValue, handshake.EnvNetwork+"="+opts.Network)
	// The plugin leads a process group of its own, so whatever it starts
	// (a wrapper script's children) is stopped with it: see killGroup.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Wait returns at most WaitDelay after the plugin exits even when
	// something it left behind still holds a pipe exec copies.
	p.cmd.WaitDelay = waitDelay
	// stderr is an *os.File, not an io.Writer, so exec starts no copying
	// goroutine for it and Wait returns as soon as the plugin exits; our own
	// copy below ends when the group is gone (or after waitDelay).
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("launch plugin: %w", err)
	}
	p.cmd.Stderr = errW
	// stdout too is a pipe of our own: exec's StdoutPipe is closed by Wait,
	// which would lose a handshake line (or a bad one, which says why) that
	// a plugin printed just before exiting; ours is read to its end.
	outR, outW, err := os.Pipe()
	if err != nil {
		errR.Close()
		errW.Close()
		return nil, fmt.Errorf("launch plugin: %w", err)
	}
	p.cmd.Stdout = outW
	closeAll := func() {
		errR.Close()
		errW.Close()
		outR.Close()
		outW.Close()
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		closeAll()
		return nil, fmt.Errorf("launch plugin: %w", err)
	}
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("launch plugin %s: %w", abs, err)
	}
	errW.Close() // the child has its copies
	outW.Close()
	stdoutDone := make(chan struct{})
	var errw io.Writer = p.stderr
	if opts.StderrTee != nil {
		errw = io.MultiWriter(p.stderr, opts.StderrTee)
	}
	stderrDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(errw, errR)
		close(stderrDone)
	}()
	go func() {
		err := p.cmd.Wait()
		// The plugin has exited: nothing it started may outlive it.
		p.killGroup()
		late := time.NewTimer(waitDelay) // a process that left the group holds a pipe
		defer late.Stop()
		select {
		case <-stderrDone:
		case <-late.C:
		}
		errR.Close()
		<-stderrDone
		select {
		case <-stdoutDone:
		case <-late.C:
		}
		outR.Close()
		<-stdoutDone
		p.waitMu.Lock()
		p.err = err
		p.waitMu.Unlock()
		close(p.exited)
	}()

	line, err := p.readHandshake(ctx, outR, stdoutDone)
	if err != nil {
		return p, err
	}
	p.Handshake = line
	p.HandshakeTime = time.Since(start)

	p.Conn, err = grpc.NewClient(line.Target(), append(DialOptions(), opts.DialOptions...)...)
	if err != nil {
		return p, fmt.Errorf("dial plugin at %s: %w", line.Target(), err)
	}
	p.Lifecycle = lifecyclev1.NewLifecycleClient(p.Conn)
	if err := p.WaitServing(ctx, "", opts.HealthTimeout); err != nil {
		return p, err
	}
	p.ReadyTime = time.Since(start)
	return p, nil
}

// DialOptions are the gRPC options a host dials a plugin with: plaintext,
// messages up to MaxMessageBytes, static flow-control windows
// (handshake.StreamWindowBytes and ConnWindowBytes).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithInitialWindowSize(handshake.StreamWindowBytes),
		grpc.WithInitialConnWindowSize(handshake.ConnWindowBytes),
	}
}

// readHandshake reads the handshake line from stdout, and then drains
// stdout until it ends; done is closed when it has.
func (p *Process) readHandshake(ctx context.Context, stdout io.Reader, done chan<- struct{}) (handshake.Line, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		defer close(done)
		r := bufio.NewReaderSize(stdout, MaxHandshakeBytes)
		b, err := r.ReadSlice('\n')
		ch <- result{string(b), err}
		// Anything more on stdout breaks the protocol; drain it to stderr's
		// buffer so it shows up in reports instead of blocking the plugin.
		// The drain ends when the plugin exits (Wait closes the pipe).
		_, _ = io.Copy(p.stderr, r)
	}()
	timer := time.NewTimer(p.opts.HandshakeTimeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		if errors.Is(res.err, bufio.ErrBufferFull) {
			return handshake.Line{}, fmt.Errorf("read handshake: the first line on stdout is longer than %d bytes",
				MaxHandshakeBytes)
		}
		if res.err != nil && res.line == "" {
			select {
			case <-p.exited:
				return handshake.Line{}, fmt.Errorf("read handshake: plugin exited without a handshake line (%s); stderr: %q", p.exitText(), p.stderrTail())
			case <-timer.C:
				return handshake.Line{}, fmt.Errorf("read handshake: plugin closed stdout without a handshake line and is still running after %v; stderr: %q", p.opts.HandshakeTimeout, p.stderrTail())
			case <-ctx.Done():
				return handshake.Line{}, fmt.Errorf("read handshake: %w", ctx.Err())
			}
		}
		line, err := handshake.Parse(res.line)
		if err != nil {
			return handshake.Line{}, err
		}
		return line, nil
	case <-p.exited:
		// What it printed before exiting says more than that it exited.
		select {
		case res := <-ch:
			if res.line != "" {
				if _, err := handshake.Parse(res.line); err != nil {
					return handshake.Line{}, fmt.Errorf("plugin exited (%s): %w", p.exitText(), err)
				}
			}
		case <-time.After(10 * time.Millisecond):
		}
		return handshake.Line{}, fmt.Errorf("read handshake: plugin exited without a handshake line (%s); stderr: %q", p.exitText(), p.stderrTail())
	case <-timer.C:
		return handshake.Line{}, fmt.Errorf("read handshake: no handshake line within %v; stderr: %q", p.opts.HandshakeTimeout, p.stderrTail())
	case <-ctx.Done():
		return handshake.Line{}, fmt.Errorf("read handshake: %w", ctx.Err())
	}
}

// WaitServing polls gRPC health for service ("" for the whole server) until
// it reports SERVING or timeout passes.
func (p *Process) WaitServing(ctx context.Context, service string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := healthpb.NewHealthClient(p.Conn)
	backoff := 2 * time.Millisecond
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{Service: service}, grpc.WaitForReady(true))
		ccancel()
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
			return fmt.Errorf("wait for health: plugin exited (%s); stderr: %q", p.exitText(), p.stderrTail())
		case <-ctx.Done():
			return fmt.Errorf("wait for health of %q: not SERVING within %v (last: %v)", service, timeout, last)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

// Setup runs Describe, Initialize and Start, returning Describe's answer.
func (p *Process) Setup(ctx context.Context, init *lifecyclev1.InitializeRequest) (*lifecyclev1.DescribeResponse, error) {
	desc, err := p.Lifecycle.Describe(ctx, &lifecyclev1.DescribeRequest{})
	if err != nil {
		return nil, fmt.Errorf("describe: %w", err)
	}
	if _, err := p.Lifecycle.Initialize(ctx, init); err != nil {
		return desc, fmt.Errorf("initialize: %w", err)
	}
	if _, err := p.Lifecycle.Start(ctx, &lifecyclev1.StartRequest{}); err != nil {
		return desc, fmt.Errorf("start: %w", err)
	}
	return desc, nil
}

// Stop asks the plugin to Stop, closes its stdin and waits up to the stop
// grace for it to exit, then kills it. It reports how the process ended; a
// plugin that had to be killed is an error.
func (p *Process) Stop(ctx context.Context) error {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	select {
	case <-p.exited:
		p.closeConn()
		return nil
	default:
	}
	var stopErr error
	if p.Conn != nil {
		sctx, cancel := context.WithTimeout(ctx, p.opts.StopGrace)
		_, err := p.Lifecycle.Stop(sctx, &lifecyclev1.StopRequest{})
		cancel()
		if err != nil && status.Code(err) != codes.Unavailable {
			stopErr = fmt.Errorf("stop rpc: %w", err)
		}
	}
	p.closeConn()
	_ = p.stdin.Close()
	select {
	case <-p.exited:
		return stopErr
	case <-time.After(p.opts.StopGrace):
		p.killGroup()
		<-p.exited
		return errors.Join(stopErr, fmt.Errorf("stop plugin: no exit within %v of closing stdin; killed", p.opts.StopGrace))
	}
}

// CloseStdin closes the plugin's stdin, as a host that dies would.
func (p *Process) CloseStdin() error { return p.stdin.Close() }

// Kill sends SIGKILL to the plugin's process group (fault injection) and
// waits for the plugin to exit.
func (p *Process) Kill() {
	p.killGroup()
	<-p.exited
	p.closeConn()
}

// killGroup sends SIGKILL to every process in the plugin's process group.
// The group id is the plugin's pid, which Linux does not reuse while any
// member of the group is alive, so this never hits a stranger.
func (p *Process) killGroup() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// PID returns the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stderr returns the kept tail of the plugin's stderr (up to
// Options.StderrLimit bytes: for reports).
func (p *Process) Stderr() string { return p.stderr.String() }

// stderrTail is the end of the plugin's stderr as errors quote it: at most
// handshake.TruncateLimit bytes, so an error stays short wherever it goes
// (a client's Unavailable message, /status, logs).
func (p *Process) stderrTail() string {
	return handshake.TruncateTail(p.stderr.String(), handshake.TruncateLimit)
}

func (p *Process) closeConn() {
	if p.Conn != nil {
		_ = p.Conn.Close()
	}
}

func (p *Process) exitText() string {
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	if p.err == nil {
		return "exit status 0"
	}
	return p.err.Error()
}

// FileSHA256 returns the hex sha256 of a file (the plugin binary digest in reports).
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
	lost  int
}

func newTailBuffer(limit int) *tailBuffer { return &tailBuffer{limit: limit} }

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.lost += over
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost > 0 {
		return fmt.Sprintf("[%d earlier bytes dropped]\n%s", t.lost, t.buf)
	}
	return string(t.buf)
}
