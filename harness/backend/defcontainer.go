package backend

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/prism-suite/prism/harness/backend/definition"
)

// defContainer is a container described by a definition file. Its port is
// published on a pinned 127.0.0.1 port, so it keeps its address across an
// outage. It implements Outager and Pauser through the wrappers of
// withFaults, as the file's faults say.
type defContainer struct {
	s       *defStart
	c       *definition.Container
	port    string // container port
	auth    *Credentials
	timeout time.Duration
	logf    func(string, ...any)

	mu       sync.Mutex
	info     Info
	provider *testcontainers.DockerProvider
	ctr      *testcontainers.DockerContainer
	stopped  bool
	paused   bool
	closed   bool
}

func (s *defStart) startContainer(ctx context.Context) (Instance, error) {
	c := s.def.Container
	image := definedImage(s.def, s.o)
	port, _ := definition.ContainerPort(c.Port)
	p, err := dockerProvider(ctx)
	if err != nil {
		return nil, s.fail("%v", err)
	}
	dc := &defContainer{s: s, c: c, port: port, auth: s.o.Auth, timeout: s.o.StartTimeout, logf: s.o.Logf, provider: p,
		info: Info{Kind: s.kind, Provider: Container, Image: image, Reason: s.reason, File: s.def.File}}
	if c.Build != nil {
		dc.info.Image = "built from " + s.def.Path(c.Build.Context)
	} else {
		s.o.Logf("backend: starting %s container %s (%s) ...", s.kind, image, s.def.File)
		id, err := ensureImage(ctx, p.Client(), image, s.o.NoPull, s.o.Logf)
		if err != nil {
			p.Close()
			return nil, s.fail("%v", err)
		}
		dc.info.ImageID = id
	}
	const attempts = 3
	for i := 1; ; i++ {
		err = dc.run(ctx, image)
		if err == nil || i == attempts || !portTaken(err) || ctx.Err() != nil {
			break
		}
		s.o.Logf("backend: host port taken, retrying: %v", err)
		_ = dc.terminate(context.WithoutCancel(ctx))
	}
	if err != nil {
		// What was started is removed; the caller's Close is then a no-op.
		tail := dc.logTail(context.WithoutCancel(ctx))
		_ = dc.Close(context.WithoutCancel(ctx))
		return nil, s.fail("%v%s", err, tail)
	}
	if s.def.Go != "" {
		if _, err := waitReady(ctx, s.kind, dc.info.Address, dc.auth, nil); err != nil {
			tail := dc.logTail(context.WithoutCancel(ctx))
			_ = dc.Close(context.WithoutCancel(ctx))
			return nil, s.fail("%v%s", err, tail)
		}
	}
	dc.info.ServerVersion = "unknown"
	if v := c.Version; v != nil {
		dc.info.ServerVersion = dc.version(ctx, v)
	}
	return withFaults(dc, s.def), nil
}

// vars are the placeholders of the container's fields.
func (dc *defContainer) vars() map[string]string {
	v := credVars(dc.auth)
	delete(v, "token")
	return v
}

// run creates and starts the container on a fresh host port and waits.
func (dc *defContainer) run(ctx context.Context, image string) error {
	hostPort, err := freePort()
	if err != nil {
		return err
	}
	dc.mu.Lock()
	dc.info.Address = loopback(hostPort)
	dc.mu.Unlock()
	c, vars := dc.c, dc.vars()
	// Placeholders were checked when the file was loaded.
	env, _ := definition.RenderMap(c.Env, vars)
	cmd, _ := definition.RenderAll(c.Command, vars)
	entry, _ := definition.RenderAll(c.Entrypoint, vars)
	if a := dc.s.def.Auth; a != nil && dc.auth != nil {
		args, _ := definition.RenderAll(a.Args, vars)
		cmd = append(cmd, args...)
		aenv, _ := definition.RenderMap(a.Env, vars)
		for k, v := range aenv {
			env[k] = v
		}
	}
	var binds []mount.Mount
	for _, v := range c.Volumes {
		src, dst, ro, _ := definition.ParseVolume(v)
		binds = append(binds, mount.Mount{Type: mount.TypeBind, Source: dc.s.def.Path(src), Target: dst, ReadOnly: ro})
	}
	modify := func(hc *container.HostConfig) {
		hc.PortBindings = network.PortMap{
			network.MustParsePort(dc.port): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(hostPort)}},
		}
		if len(c.Tmpfs) > 0 {
			hc.Tmpfs = map[string]string{}
			for k, v := range c.Tmpfs {
				hc.Tmpfs[k] = v
			}
		}
		hc.Mounts = append(hc.Mounts, binds...)
	}
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(tcLogger),
		testcontainers.WithLabels(harnessLabels(dc.s.kind)),
		testcontainers.WithExposedPorts(dc.port),
		testcontainers.WithHostConfigModifier(modify),
		testcontainers.WithEnv(env),
		testcontainers.WithWaitStrategy(dc.waitStrategy()),
	}
	if len(cmd) > 0 {
		opts = append(opts, testcontainers.WithCmd(cmd...))
	}
	if len(entry) > 0 {
		opts = append(opts, testcontainers.WithEntrypoint(entry...))
	}
	if b := c.Build; b != nil {
		args := map[string]*string{}
		for k, v := range b.Args {
			args[k] = &v
		}
		image = ""
		opts = append(opts, testcontainers.WithDockerfile(testcontainers.FromDockerfile{
			Context: dc.s.def.Path(b.Context), Dockerfile: b.Dockerfile, BuildArgs: args,
			Repo: "prism-build/" + dc.s.def.Name, Tag: "latest", KeepImage: true,
		}))
	}
	ctr, err := testcontainers.Run(ctx, image, opts...)
	dc.mu.Lock()
	dc.ctr = ctr
	dc.mu.Unlock()
	if err != nil {
		w := dc.c.Wait
		if ctr != nil && strings.Contains(err.Error(), "wait until ready") || ctx.Err() != nil {
			return fmt.Errorf("waited %s for %s: %w", waitTimeout(w, dc.s.o), waitWhat(w), err)
		}
		return err
	}
	return nil
}

// waitStrategy is the file's wait, with testcontainers-go's strategies.
func (dc *defContainer) waitStrategy() wait.Strategy {
	w, vars := dc.c.Wait, dc.vars()
	var all []wait.Strategy
	if w.Log != "" {
		all = append(all, wait.ForLog(w.Log).WithOccurrence(max(w.LogOccurrences, 1)).WithPollInterval(50*time.Millisecond))
	}
	if w.Port != "" {
		p, _ := definition.ContainerPort(w.Port)
		all = append(all, &openPort{port: p})
	}
	if len(w.Exec) > 0 {
		cmd, _ := definition.RenderAll(w.Exec, vars)
		all = append(all, wait.ForExec(cmd).WithPollInterval(100*time.Millisecond))
	}
	if h := w.HTTP; h != nil {
		p, _ := definition.ContainerPort(h.Port)
		status := cmpOr(h.Status, 200)
		all = append(all, wait.ForHTTP(cmpOr(h.Path, "/")).WithPort(p).WithPollInterval(100*time.Millisecond).
			WithStatusCodeMatcher(func(s int) bool { return s == status }))
	}
	return wait.ForAll(all...).WithDeadline(waitTimeout(w, dc.s.o))
}

// openPort waits until the published port of a container port accepts a
// connection that the server keeps open (docker's proxy accepts and closes
// at once when nothing listens inside).
type openPort struct{ port string }

// WaitUntilReady implements wait.Strategy.
func (o *openPort) WaitUntilReady(ctx context.Context, t wait.StrategyTarget) error {
	for {
		host, err := t.Host(ctx)
		if err == nil {
			var mp network.Port
			if mp, err = t.MappedPort(ctx, o.port); err == nil {
				if portOpen(ctx, loopbackHost(host, mp.Num())) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("port %s is not open: %w", o.port, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (o *openPort) String() string { return "port " + o.port + " open" }

func loopbackHost(host string, port uint16) string {
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	return strings.TrimSuffix(host, ".") + ":" + strconv.Itoa(int(port))
}

// logTail returns "; last log lines:\n..." of the container, or "".
func (dc *defContainer) logTail(ctx context.Context) string {
	dc.mu.Lock()
	ctr := dc.ctr
	dc.mu.Unlock()
	if ctr == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := ctr.Logs(ctx)
	if err != nil {
		return "; container log: (" + err.Error() + ")"
	}
	defer r.Close()
	t := lastLines(r, 20)
	if t == "" {
		return "; the container logged nothing"
	}
	return "; last lines of the container's log:\n" + t
}

// execIn runs cmd in the container and returns its exit code and output.
func (dc *defContainer) execIn(ctx context.Context, cmd []string) (int, string, error) {
	dc.mu.Lock()
	ctr := dc.ctr
	dc.mu.Unlock()
	if ctr == nil {
		return -1, "", errClosed
	}
	code, r, err := ctr.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		return code, "", err
	}
	b, _ := io.ReadAll(io.LimitReader(r, 1<<20))
	return code, string(b), nil
}

// version runs the version command in the container.
func (dc *defContainer) version(ctx context.Context, v *definition.Version) string {
	cmd, _ := definition.RenderAll(v.Exec, dc.vars())
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	code, out, err := dc.execIn(ctx, cmd)
	if err != nil || code != 0 {
		dc.logf("backend: version command %q: exit %d, %v: %s", cmd, code, err, handshakeTrunc(out))
		return "unknown"
	}
	return pickVersion(v, out)
}

func (dc *defContainer) Info() Info {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	return dc.info
}

func (dc *defContainer) PluginConfig() (map[string]any, map[string]string) {
	return definedConfig(dc.s.def, dc.Info().Address, dc.auth, nil)
}

func (dc *defContainer) persistent() bool { return dc.s.def.Faults.Persistent }

// down stops the container (SIGTERM, then SIGKILL after 5s).
func (dc *defContainer) down(ctx context.Context) error {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.closed || dc.ctr == nil {
		return errClosed
	}
	if dc.paused {
		if err := dc.unpauseLocked(ctx); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, dc.timeout)
	defer cancel()
	grace := 5 * time.Second
	if err := dc.ctr.Stop(ctx, &grace); err != nil {
		return harnessErr("stop %s container: %w", dc.s.kind, err)
	}
	dc.stopped = true
	return nil
}

// up starts the container again on the same host port and waits: the
// file's wait strategies run again (a log line counts from the start of the
// container's log), then the port must be open.
func (dc *defContainer) up(ctx context.Context) error {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.closed || dc.ctr == nil {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, dc.timeout)
	defer cancel()
	if err := dc.ctr.Start(ctx); err != nil {
		return harnessErr("start %s container: %w", dc.s.kind, err)
	}
	dc.stopped = false
	if dc.s.def.Go != "" {
		if _, err := waitReady(ctx, dc.s.kind, dc.info.Address, dc.auth, nil); err != nil {
			return harnessErr("restart %s container: %w", dc.s.kind, err)
		}
		return nil
	}
	for !portOpen(ctx, dc.info.Address) {
		select {
		case <-ctx.Done():
			return harnessErr("restart %s container: port %s is not open: %w", dc.s.kind, dc.info.Address, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func (dc *defContainer) pause(ctx context.Context) error {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.closed || dc.ctr == nil {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, dc.timeout)
	defer cancel()
	if _, err := dc.provider.Client().ContainerPause(ctx, dc.ctr.GetContainerID(), client.ContainerPauseOptions{}); err != nil {
		return harnessErr("pause %s container: %w", dc.s.kind, err)
	}
	dc.paused = true
	return nil
}

func (dc *defContainer) unpause(ctx context.Context) error {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.closed || dc.ctr == nil {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, dc.timeout)
	defer cancel()
	return dc.unpauseLocked(ctx)
}

func (dc *defContainer) unpauseLocked(ctx context.Context) error {
	if _, err := dc.provider.Client().ContainerUnpause(ctx, dc.ctr.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		return harnessErr("unpause %s container: %w", dc.s.kind, err)
	}
	dc.paused = false
	return nil
}

// Close removes the container; one already gone is not an error.
func (dc *defContainer) Close(ctx context.Context) error {
	dc.mu.Lock()
	if dc.closed {
		dc.mu.Unlock()
		return nil
	}
	dc.closed = true
	dc.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, dc.timeout)
	defer cancel()
	err := dc.terminate(ctx)
	dc.provider.Close()
	if err != nil {
		return harnessErr("remove %s container: %w", dc.s.kind, err)
	}
	return nil
}

func (dc *defContainer) terminate(ctx context.Context) error {
	dc.mu.Lock()
	ctr, paused := dc.ctr, dc.paused
	dc.ctr, dc.paused = nil, false
	dc.mu.Unlock()
	if ctr == nil {
		return nil
	}
	return removeContainer(ctx, dc.provider.Client(), ctr.GetContainerID(), paused, string(dc.s.kind), dc.logf)
}

// users returns the file's users, run in the container.
func (dc *defContainer) users() (Users, error) {
	return definedUsers(dc.s.def, dc.auth, func() string { return dc.Info().Address }, dc.execIn)
}
