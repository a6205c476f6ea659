package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// node is one server of a cluster, whatever provides it.
type node interface {
	// id names the node ("redis-0").
	id() string
	// addr is where clients (the plugin, the harness) reach it.
	addr() string
	// bus is the port other nodes reach it on (redis cluster bus, nats
	// routes).
	bus() int
	// start runs the server (again, with the same data and address).
	start(ctx context.Context) error
	// kill stops it hard and waits until it is gone.
	kill(ctx context.Context) error
	pause(ctx context.Context) error
	resume(ctx context.Context) error
	disconnect(ctx context.Context) error
	reconnect(ctx context.Context) error
	// close stops it and removes what it created.
	close(ctx context.Context) error
}

// errPartition is the reason a process node cannot be partitioned.
var errPartition = errors.New("a process cluster shares the loopback interface: a node cannot be cut off from it (use --instance container)")

// procNode is a server process on a loopback port with its own data dir.
type procNode struct {
	name, path, dir, address string
	busPort                  int
	args                     []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

func (p *procNode) id() string   { return p.name }
func (p *procNode) addr() string { return p.address }
func (p *procNode) bus() int     { return p.busPort }

func (p *procNode) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.exited:
		default:
			return nil // running
		}
	}
	logFile, err := os.OpenFile(filepath.Join(p.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open server log: %w", p.name, err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The server dies with the thread that started it should this process
	// die without Close; its own group keeps terminal signals away.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: run %s: %w", p.name, p.path, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited, p.paused = cmd, exited, false
	return nil
}

func (p *procNode) kill(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-ctx.Done():
		return fmt.Errorf("%s: wait for exit after SIGKILL: %w", p.name, ctx.Err())
	}
	p.paused = false
	return nil
}

func (p *procNode) signal(sig syscall.Signal, paused bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s: not running", p.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: signal %v: %w", p.name, sig, err)
	}
	p.paused = paused
	return nil
}

func (p *procNode) pause(context.Context) error  { return p.signal(syscall.SIGSTOP, true) }
func (p *procNode) resume(context.Context) error { return p.signal(syscall.SIGCONT, false) }

func (p *procNode) disconnect(context.Context) error { return errPartition }
func (p *procNode) reconnect(context.Context) error  { return errPartition }

func (p *procNode) close(ctx context.Context) error {
	p.mu.Lock()
	paused := p.paused
	p.mu.Unlock()
	if paused {
		_ = p.resume(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := p.kill(ctx)
	if rerr := os.RemoveAll(p.dir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// poll calls f until it returns nil or ctx ends, and returns f's last error
// with ctx's.
func poll(ctx context.Context, every time.Duration, f func(context.Context) error) error {
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(every):
		}
	}
}
