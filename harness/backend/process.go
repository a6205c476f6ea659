package backend

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// processInstance is a server binary run as a child process on a fixed
// loopback port with its own temp dir (data, log).
type processInstance struct {
	kind    Kind
	auth    *Credentials
	um      *natsUsers  // nats with an admin user
	ru      *redisUsers // redis with an admin ACL user
	path    string
	args    []string
	dir     string
	timeout time.Duration
	logf    func(string, ...any)

	mu     sync.Mutex
	info   Info
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	paused bool
	closed bool
}

var (
	_ Outager = (*processInstance)(nil)
	_ Pauser  = (*processInstance)(nil)
)

func startProcess(ctx context.Context, kind Kind, o Options, reason string) (Instance, error) {
	if fromFile(kind, o) {
		// The built-ins start from their backend.yaml (nats with users to
		// manage, and redis with requirepass, stay Go).
		return startBuiltin(ctx, kind, Process, o, reason)
	}
	bin := o.RedisServerPath
	if kind == NATS {
		bin = o.NATSServerPath
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, harnessErr("find %s server: %w", kind, err)
	}
	port, err := freePort()
	if err != nil {
		return nil, &HarnessError{Err: err}
	}
	dir, err := os.MkdirTemp("", "prism-"+string(kind)+"-")
	if err != nil {
		return nil, harnessErr("create data dir: %w", err)
	}
	p := &processInstance{
		kind: kind, auth: o.Auth, path: path, dir: dir, timeout: o.StartTimeout, logf: o.Logf,
		info: Info{Kind: kind, Provider: Process, Address: loopback(port), Reason: reason},
	}
	switch kind {
	case Redis:
		p.args = []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", "",
		}
		p.args = append(p.args, redisAuthArgs(o.Auth)...)
		p.ru = newRedisUsers(func() string { return p.Info().Address }, o.Auth)
	case NATS:
		p.args = []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir}
		if o.Auth != nil && o.Auth.Username != "" {
			// Users from a config file, reloaded on SIGHUP, so that the auth
			// specs can add some.
			p.um, _ = newNATSUsers(func() string { return p.Info().Address }, o.Auth, p.reloadUsers)
			if err := p.writeUsers(p.um.all()); err != nil {
				return p, &HarnessError{Err: err}
			}
			p.args = append(p.args, "-c", p.usersFile())
		} else {
			p.args = append(p.args, natsAuthArgs(o.Auth)...)
		}
	}
	o.Logf("backend: starting %s process %s on %s (data in %s) ...", kind, path, p.info.Address, dir)
	p.mu.Lock()
	defer p.mu.Unlock()
	v, err := p.startLocked(ctx)
	if err != nil {
		return p, harnessErr("start %s process: %w", kind, err)
	}
	p.info.ServerVersion = v
	return p, nil
}

// startLocked runs the server and waits until it answers.
func (p *processInstance) startLocked(ctx context.Context) (string, error) {
	logPath := filepath.Join(p.dir, "server.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The server dies with the thread that started it, should this process
	// die without Close; its own process group keeps it out of terminal
	// signals meant for the test run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("run %s: %w", p.path, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited, p.paused = cmd, exited, false
	v, err := waitReady(ctx, p.kind, p.info.Address, p.auth, exited)
	if err != nil {
		p.killLocked()
		return "", fmt.Errorf("%w; server log: %s", err, tail(logPath, 2048))
	}
	return v, nil
}

// killLocked kills the server, if running, and waits for it to exit.
func (p *processInstance) killLocked() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill() // SIGKILL also ends a stopped (paused) process
	<-p.exited
	p.cmd, p.paused = nil, false
}

func (p *processInstance) Info() Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

func (p *processInstance) PluginConfig() (map[string]any, map[string]string) {
	return pluginConfig(p.kind, p.Info().Address, p.auth)
}

// Persistent is true: Redis writes an append-only file and JetStream a file
// store in the instance's dir, and Up restarts the server on the same dir.
// (Redis writes the file before it replies, so even SIGKILL keeps what a
// client was told is written.)
func (p *processInstance) Persistent() bool { return true }

// Down kills the server (SIGKILL: a crash).
func (p *processInstance) Down(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	p.killLocked()
	return nil
}

// Up restarts the server on the same port and dir and waits until it answers.
func (p *processInstance) Up(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	if p.cmd != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if _, err := p.startLocked(ctx); err != nil {
		return harnessErr("restart %s process: %w", p.kind, err)
	}
	if err := p.ru.replay(ctx, p.info.Address); err != nil {
		return &HarnessError{Err: err}
	}
	return nil
}

// Pause stops the server with SIGSTOP; its sockets stay open.
func (p *processInstance) Pause(ctx context.Context) error {
	return p.signal(syscall.SIGSTOP, true)
}

// Unpause continues the server with SIGCONT.
func (p *processInstance) Unpause(ctx context.Context) error {
	return p.signal(syscall.SIGCONT, false)
}

func (p *processInstance) signal(sig syscall.Signal, paused bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	if p.cmd == nil {
		return fmt.Errorf("signal %s server: server is down", p.kind)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return harnessErr("signal %s server: %w", p.kind, err)
	}
	p.paused = paused
	if sig == syscall.SIGSTOP {
		// SIGSTOP takes effect asynchronously: a server thread may still
		// answer a command sent right after kill(2) returns.
		return WaitStopped(p.cmd.Process.Pid, 5*time.Second)
	}
	return nil
}

// Close kills the server and removes its dir.
func (p *processInstance) Close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.killLocked()
	if err := os.RemoveAll(p.dir); err != nil {
		return harnessErr("remove data dir: %w", err)
	}
	return nil
}

// tail returns the last n bytes of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}

func (p *processInstance) users() (Users, error) {
	switch {
	case p.kind == Redis:
		return redisUsersOf(p.ru)
	case p.um != nil:
		return p.um, nil
	}
	return nil, errNoAdmin(p.kind)
}

func (p *processInstance) usersFile() string { return filepath.Join(p.dir, "users.conf") }

func (p *processInstance) writeUsers(users []natsUser) error {
	if err := os.WriteFile(p.usersFile(), []byte(natsConfig(users)), 0o600); err != nil {
		return fmt.Errorf("write nats users: %w", err)
	}
	return nil
}

// reloadUsers rewrites the users file and signals the server to reload it
// (natsUsers waits until the change shows).
func (p *processInstance) reloadUsers(_ context.Context, users []natsUser) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.writeUsers(users); err != nil {
		return err
	}
	if p.cmd == nil {
		return nil // a restarted server reads the file
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal nats to reload: %w", err)
	}
	return nil
}
