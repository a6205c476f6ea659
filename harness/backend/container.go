package backend

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Ports inside the containers.
const (
	redisContainerPort = "6379/tcp"
	natsContainerPort  = "4222/tcp"
)

// containerInstance is a server in a Docker container whose port is published
// on a pinned 127.0.0.1 port, so it keeps its address across Down/Up.
type containerInstance struct {
	kind    Kind
	auth    *Credentials
	um      *natsUsers  // nats with an admin user
	ru      *redisUsers // redis with an admin ACL user
	timeout time.Duration
	logf    func(string, ...any)

	mu       sync.Mutex
	info     Info
	provider *testcontainers.DockerProvider
	ctr      *testcontainers.DockerContainer
	down     bool
	paused   bool
	closed   bool
}

var (
	_ Outager = (*containerInstance)(nil)
	_ Pauser  = (*containerInstance)(nil)
)

func startContainer(ctx context.Context, kind Kind, o Options, reason string) (Instance, error) {
	if fromFile(kind, o) {
		// The built-ins start from their backend.yaml (nats with users to
		// manage, and redis with requirepass, stay Go).
		return startBuiltin(ctx, kind, Container, o, reason)
	}
	image := o.Image(kind)
	o.Logf("backend: starting %s container %s ...", kind, image)
	p, err := dockerProvider(ctx)
	if err != nil {
		return nil, harnessErr("start %s container: %w", kind, err)
	}
	imageID, err := ensureImage(ctx, p.Client(), image, o.NoPull, o.Logf)
	if err != nil {
		p.Close()
		return nil, harnessErr("start %s container: %w", kind, err)
	}
	c := &containerInstance{
		kind: kind, auth: o.Auth, timeout: o.StartTimeout, logf: o.Logf, provider: p,
		info: Info{Kind: kind, Provider: Container, Image: image, ImageID: imageID, Reason: reason},
	}
	if kind == NATS && o.Auth != nil && o.Auth.Username != "" {
		c.um, _ = newNATSUsers(func() string { return c.Info().Address }, o.Auth, c.reloadUsers)
	}
	if kind == Redis {
		c.ru = newRedisUsers(func() string { return c.Info().Address }, o.Auth)
	}
	// The host port is chosen here and bound explicitly, so that it stays the
	// same after a restart. Another process may take it between the choice and
	// the bind: try a few ports.
	const attempts = 3
	for i := 1; ; i++ {
		err = c.run(ctx, image)
		if err == nil || i == attempts || !portTaken(err) || ctx.Err() != nil {
			break
		}
		o.Logf("backend: host port taken, retrying: %v", err)
		c.terminate(ctx)
	}
	if err != nil {
		return c, harnessErr("start %s container %s: %w", kind, image, err)
	}
	v, err := waitReady(ctx, kind, c.info.Address, c.auth, nil)
	if err != nil {
		return c, harnessErr("start %s container %s: %w", kind, image, err)
	}
	c.info.ServerVersion = v
	return c, nil
}

// run creates and starts the container on a fresh host port.
func (c *containerInstance) run(ctx context.Context, image string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	c.info.Address = loopback(port)
	containerPort := redisContainerPort
	if c.kind == NATS {
		containerPort = natsContainerPort
	}
	pin := func(hc *container.HostConfig) {
		hc.PortBindings = network.PortMap{
			network.MustParsePort(containerPort): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}},
		}
	}
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(tcLogger),
		testcontainers.WithLabels(harnessLabels(c.kind)),
		testcontainers.WithExposedPorts(containerPort),
		testcontainers.WithHostConfigModifier(pin),
	}
	var ctr *testcontainers.DockerContainer
	switch c.kind {
	case Redis:
		// Append-only file in the container's /data (the workdir of the
		// official and the offline image): data survives Down/Up.
		args := append([]string{"--appendonly", "yes", "--save", ""}, redisAuthArgs(c.auth)...)
		opts = append(opts,
			testcontainers.WithCmdArgs(args...),
			// Scratch images have no shell for the module's internal port
			// check; readiness is polled on the published port below.
			testcontainers.WithWaitStrategy(wait.ForLog("Ready to accept connections").WithStartupTimeout(c.timeout)),
		)
		var rc *tcredis.RedisContainer
		rc, err = tcredis.Run(ctx, image, opts...)
		if rc != nil {
			ctr, _ = rc.Container.(*testcontainers.DockerContainer)
		}
	case NATS:
		// JetStream keeps its store in the container's file system, which
		// survives Down/Up.
		args := append([]string{"-js"}, natsAuthArgs(c.auth)...)
		if c.um != nil {
			// Users from a config file, reloaded on SIGHUP (auth specs).
			args = []string{"-js", "-c", natsUsersPath}
			opts = append(opts, testcontainers.WithFiles(testcontainers.ContainerFile{
				Reader: strings.NewReader(natsConfig(c.um.all())), ContainerFilePath: natsUsersPath, FileMode: 0o644}))
		}
		opts = append(opts,
			testcontainers.WithCmd(args...),
			testcontainers.WithWaitStrategy(wait.ForLog("Server is ready").WithStartupTimeout(c.timeout)),
		)
		ctr, err = testcontainers.Run(ctx, image, opts...)
	}
	c.mu.Lock()
	c.ctr = ctr
	c.mu.Unlock()
	return err
}

// portTaken reports whether err says the pinned host port was in use.
func portTaken(err error) bool {
	s := err.Error()
	return strings.Contains(s, "port is already allocated") || strings.Contains(s, "address already in use")
}

func (c *containerInstance) Info() Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

func (c *containerInstance) PluginConfig() (map[string]any, map[string]string) {
	return pluginConfig(c.kind, c.Info().Address, c.auth)
}

// Persistent is true: Redis runs with an append-only file and JetStream with
// a file store, both in the container's file system, which Down/Up keeps.
func (c *containerInstance) Persistent() bool { return true }

// Down stops the container (SIGTERM, then SIGKILL after 5s).
func (c *containerInstance) Down(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.ctr == nil {
		return errClosed
	}
	if c.paused {
		if err := c.unpauseLocked(ctx); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	grace := 5 * time.Second
	if err := c.ctr.Stop(ctx, &grace); err != nil {
		return harnessErr("stop %s container: %w", c.kind, err)
	}
	c.down = true
	return nil
}

// Up starts the container again on the same host port and waits until the
// server answers.
func (c *containerInstance) Up(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.ctr == nil {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.ctr.Start(ctx); err != nil {
		return harnessErr("start %s container: %w", c.kind, err)
	}
	c.down = false
	if _, err := waitReady(ctx, c.kind, c.info.Address, c.auth, nil); err != nil {
		return harnessErr("restart %s container: %w", c.kind, err)
	}
	if err := c.ru.replay(ctx, c.info.Address); err != nil {
		return &HarnessError{Err: err}
	}
	return nil
}

// Pause freezes the container's processes; its sockets stay open.
func (c *containerInstance) Pause(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.ctr == nil {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.provider.Client().ContainerPause(ctx, c.ctr.GetContainerID(), client.ContainerPauseOptions{}); err != nil {
		return harnessErr("pause %s container: %w", c.kind, err)
	}
	c.paused = true
	return nil
}

// Unpause thaws the container.
func (c *containerInstance) Unpause(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.ctr == nil {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.unpauseLocked(ctx)
}

func (c *containerInstance) unpauseLocked(ctx context.Context) error {
	if _, err := c.provider.Client().ContainerUnpause(ctx, c.ctr.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		return harnessErr("unpause %s container: %w", c.kind, err)
	}
	c.paused = false
	return nil
}

// Close removes the container. A container already gone (swept) is not an
// error.
func (c *containerInstance) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := c.terminate(ctx)
	c.provider.Close()
	if err != nil {
		return harnessErr("remove %s container: %w", c.kind, err)
	}
	return nil
}

// terminate removes the current container, if any.
func (c *containerInstance) terminate(ctx context.Context) error {
	c.mu.Lock()
	ctr, paused := c.ctr, c.paused
	c.ctr, c.paused = nil, false
	c.mu.Unlock()
	if ctr == nil {
		return nil
	}
	id := ctr.GetContainerID()
	c.logf("backend: removing %s container %.12s", c.kind, id)
	if paused {
		// A paused container is removed by force below either way.
		_, _ = c.provider.Client().ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
	}
	// Force removal kills the server at once: nothing in it needs keeping.
	_, err := c.provider.Client().ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return nil
}

func (c *containerInstance) users() (Users, error) {
	switch {
	case c.kind == Redis:
		return redisUsersOf(c.ru)
	case c.um != nil:
		return c.um, nil
	}
	return nil, errNoAdmin(c.kind)
}

// natsUsersPath is the users config file in a nats container.
const natsUsersPath = "/prism-users.conf"

// reloadUsers copies the users file into the container and signals the
// server to reload it (natsUsers waits until the change shows).
func (c *containerInstance) reloadUsers(ctx context.Context, users []natsUser) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctr == nil || c.down {
		return errors.New("the nats container is not running")
	}
	if err := c.ctr.CopyToContainer(ctx, []byte(natsConfig(users)), natsUsersPath, 0o644); err != nil {
		return fmt.Errorf("copy nats users: %w", err)
	}
	if _, err := c.provider.Client().ContainerKill(ctx, c.ctr.GetContainerID(), client.ContainerKillOptions{Signal: "HUP"}); err != nil {
		return fmt.Errorf("signal nats to reload: %w", err)
	}
	return nil
}
