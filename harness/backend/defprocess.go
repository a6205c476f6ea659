package backend

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prism-suite/prism/harness/backend/definition"
)

// defProcess is a server binary described by a definition file, run on a
// fixed loopback port with its own temp dir.
type defProcess struct {
	s       *defStart
	p       *definition.Process
	auth    *Credentials
	ru      *redisUsers // go: redis with an admin ACL user
	path    string
	port    int
	dir     string
	argv    []string
	env     []string
	timeout time.Duration
	logf    func(string, ...any)

	mu     sync.Mutex
	info   Info
	cmd    *exec.Cmd
	exited chan struct{}
	closed bool
}

func (s *defStart) startProcess(ctx context.Context) (Instance, error) {
	p := s.def.Process
	bin := definedBinary(s.def, s.o)
	path, err := lookPath(bin)
	if err != nil {
		return nil, s.fail("find the server binary: %v", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, s.fail("%v", err)
	}
	dir, err := os.MkdirTemp("", "prism-"+s.def.Name+"-")
	if err != nil {
		return nil, s.fail("create the instance's dir: %v", err)
	}
	dp := &defProcess{s: s, p: p, auth: s.o.Auth, path: path, port: port, dir: dir, timeout: s.o.StartTimeout, logf: s.o.Logf,
		info: Info{Kind: s.kind, Provider: Process, Address: loopback(port), Reason: s.reason, File: s.def.File}}
	dp.ru = builtinUsers(s.def, func() string { return dp.Info().Address }, dp.auth)
	vars := dp.vars()
	// Placeholders were checked when the file was loaded.
	argv, _ := definition.RenderAll(p.Command, vars)
	argv[0] = path
	env, _ := definition.RenderMap(p.Env, vars)
	if a := s.def.Auth; a != nil && dp.auth != nil {
		args, _ := definition.RenderAll(a.Args, vars)
		argv = append(argv, args...)
		aenv, _ := definition.RenderMap(a.Env, vars)
		maps.Copy(env, aenv)
	}
	dp.argv = argv
	dp.env = os.Environ()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		dp.env = append(dp.env, k+"="+env[k])
	}
	for i, c := range p.Init {
		cmd, _ := definition.RenderAll(c, vars)
		ictx, cancel := context.WithTimeout(ctx, waitTimeout(p.Wait, s.o))
		code, out, err := localRun(ictx, cmd)
		cancel()
		if err != nil || code != 0 {
			_ = dp.Close(ctx)
			return nil, s.fail("init command %d %q: exit %d %v: %s", i, cmd, code, err, handshakeTrunc(strings.TrimSpace(out)))
		}
	}
	s.o.Logf("backend: starting %s process %s on %s (dir %s, %s) ...", s.kind, path, dp.info.Address, dir, s.def.File)
	dp.mu.Lock()
	err = dp.startLocked(ctx)
	dp.mu.Unlock()
	if err != nil {
		_ = dp.Close(context.WithoutCancel(ctx))
		return nil, s.fail("%v", err)
	}
	dp.info.ServerVersion = "unknown"
	if v := p.Version; v != nil {
		cmd, _ := definition.RenderAll(v.Exec, vars)
		vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		code, out, err := localRun(vctx, cmd)
		cancel()
		if err == nil && code == 0 {
			dp.info.ServerVersion = pickVersion(v, out)
		} else {
			s.o.Logf("backend: version command %q: exit %d, %v: %s", cmd, code, err, handshakeTrunc(out))
		}
	}
	return withFaults(dp, s.def), nil
}

func (dp *defProcess) vars() map[string]string {
	v := credVars(dp.auth)
	delete(v, "token")
	v["host"], v["port"], v["addr"] = "127.0.0.1", strconv.Itoa(dp.port), loopback(dp.port)
	v["dir"], v["binary"] = dp.dir, dp.path
	return v
}

func (dp *defProcess) logPath() string { return filepath.Join(dp.dir, "server.log") }

// startLocked runs the server and waits as the file says.
func (dp *defProcess) startLocked(ctx context.Context) error {
	logFile, err := os.OpenFile(dp.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close()
	fi, _ := logFile.Stat()
	offset := fi.Size() // a log line counts only if written by this start
	cmd := exec.Command(dp.argv[0], dp.argv[1:]...)
	cmd.Dir, cmd.Env = dp.dir, dp.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", dp.argv[0], err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	dp.cmd, dp.exited = cmd, exited
	if err := dp.wait(ctx, offset, exited); err != nil {
		dp.killLocked()
		return fmt.Errorf("%w; %s", err, dp.logTail())
	}
	if dp.s.def.Go != "" {
		if _, err := waitReady(ctx, dp.s.kind, dp.info.Address, dp.auth, exited); err != nil {
			dp.killLocked()
			return fmt.Errorf("%w; %s", err, dp.logTail())
		}
	}
	return nil
}

func (dp *defProcess) logTail() string {
	b, err := os.ReadFile(dp.logPath())
	if err != nil {
		return "server log: (" + err.Error() + ")"
	}
	t := lastLines(strings.NewReader(string(b)), 20)
	if t == "" {
		return "the server logged nothing"
	}
	return "last lines of the server's log:\n" + t
}

// wait polls the file's wait strategies until all succeed, the timeout
// passes or the server exits.
func (dp *defProcess) wait(ctx context.Context, offset int64, exited <-chan struct{}) error {
	w := dp.p.Wait
	timeout := waitTimeout(w, dp.s.o)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	vars := dp.vars()
	portOf := func(p string) string {
		if p == "{port}" {
			return dp.info.Address
		}
		return net.JoinHostPort("127.0.0.1", p)
	}
	var exec []string
	if len(w.Exec) > 0 {
		exec, _ = definition.RenderAll(w.Exec, vars)
	}
	hc := &http.Client{Timeout: time.Second}
	pending := "the first check"
	ready := func() bool {
		if w.Log != "" {
			b, _ := os.ReadFile(dp.logPath())
			if int64(len(b)) < offset || strings.Count(string(b[offset:]), w.Log) < max(w.LogOccurrences, 1) {
				pending = fmt.Sprintf("log line %q", w.Log)
				return false
			}
		}
		if w.Port != "" {
			d := net.Dialer{Timeout: time.Second}
			c, err := d.DialContext(ctx, "tcp", portOf(w.Port))
			if err != nil {
				pending = "port " + portOf(w.Port) + " open"
				return false
			}
			c.Close()
		}
		if exec != nil {
			ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
			code, _, err := localRun(ectx, exec)
			cancel()
			if err != nil || code != 0 {
				pending = fmt.Sprintf("command %q exiting 0", exec)
				return false
			}
		}
		if h := w.HTTP; h != nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+portOf(h.Port)+cmpOr(h.Path, "/"), nil)
			resp, err := hc.Do(req)
			if err != nil {
				pending = "HTTP " + req.URL.String()
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != cmpOr(h.Status, 200) {
				pending = fmt.Sprintf("HTTP %s answering %d (got %d)", req.URL, cmpOr(h.Status, 200), resp.StatusCode)
				return false
			}
		}
		return true
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !ready() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waited %s for %s: still waiting for %s", timeout, waitWhat(w), pending)
		case <-exited:
			return fmt.Errorf("the server exited while waiting for %s", waitWhat(w))
		case <-tick.C:
		}
	}
	return nil
}

// killLocked kills the server, if running, and waits for it to exit.
func (dp *defProcess) killLocked() {
	if dp.cmd == nil {
		return
	}
	kids := descendants(dp.cmd.Process.Pid)                // before the server dies and they are reparented
	_ = syscall.Kill(-dp.cmd.Process.Pid, syscall.SIGKILL) // its group: children too; also ends a stopped server
	for _, pid := range kids {
		_ = syscall.Kill(pid, syscall.SIGKILL) // children in sessions of their own (postgres backends)
	}
	_ = dp.cmd.Process.Kill()
	<-dp.exited
	dp.cmd = nil
}

func (dp *defProcess) Info() Info {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.info
}

func (dp *defProcess) PluginConfig() (map[string]any, map[string]string) {
	return definedConfig(dp.s.def, dp.Info().Address, dp.auth, nil)
}

func (dp *defProcess) persistent() bool { return dp.s.def.Faults.Persistent }

// down kills the server (SIGKILL: a crash).
func (dp *defProcess) down(context.Context) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return errClosed
	}
	dp.killLocked()
	return nil
}

// up restarts the server on the same port and dir and waits.
func (dp *defProcess) up(ctx context.Context) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return errClosed
	}
	if dp.cmd != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, dp.timeout)
	defer cancel()
	if err := dp.startLocked(ctx); err != nil {
		return harnessErr("restart %s process: %w", dp.s.kind, err)
	}
	if err := dp.ru.replay(ctx, dp.info.Address); err != nil {
		return &HarnessError{Err: err}
	}
	return nil
}

func (dp *defProcess) pause(context.Context) error   { return dp.signal(syscall.SIGSTOP) }
func (dp *defProcess) unpause(context.Context) error { return dp.signal(syscall.SIGCONT) }

func (dp *defProcess) signal(sig syscall.Signal) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return errClosed
	}
	if dp.cmd == nil {
		return fmt.Errorf("signal %s server: server is down", dp.s.kind)
	}
	// The whole process group: a server with worker processes (postgres)
	// freezes or resumes as a whole.
	if err := syscall.Kill(-dp.cmd.Process.Pid, sig); err != nil {
		return harnessErr("signal %s server: %w", dp.s.kind, err)
	}
	// And its descendants: postgres forks a process per connection, in a
	// session of its own (setsid), so neither the server nor its process
	// group reaches them, and a paused postmaster alone still answers.
	kids := descendants(dp.cmd.Process.Pid)
	for _, pid := range kids {
		_ = syscall.Kill(pid, sig)
	}
	if sig == syscall.SIGSTOP {
		for _, pid := range kids {
			if err := WaitStopped(pid, dp.timeout); err != nil {
				return err
			}
		}
		// The signal is delivered asynchronously: a server thread may
		// still answer a request sent right after kill(2) returns. Wait
		// until the kernel shows the process stopped.
		return WaitStopped(dp.cmd.Process.Pid, dp.timeout)
	}
	return nil
}

// descendants lists the processes below pid, read from /proc (none
// without /proc).
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) STATE PPID ...; comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out
}

// Close kills the server and removes its dir.
func (dp *defProcess) Close(context.Context) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return nil
	}
	dp.closed = true
	dp.killLocked()
	if err := os.RemoveAll(dp.dir); err != nil {
		return harnessErr("remove %s dir: %w", dp.s.kind, err)
	}
	return nil
}

func (dp *defProcess) users() (Users, error) {
	if dp.ru != nil {
		return dp.ru, nil
	}
	run := func(ctx context.Context, cmd []string) (int, string, error) { return localRun(ctx, cmd) }
	return definedUsers(dp.s.def, dp.auth, func() string { return dp.Info().Address }, run)
}
