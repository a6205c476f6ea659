package backend

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	mrserver "github.com/alicebob/miniredis/v2/server"
	"github.com/nats-io/nats-server/v2/server"

	natsplugin "github.com/prism-suite/prism/backends/nats"
)

func startEmbedded(ctx context.Context, kind Kind, o Options, reason string) (Instance, error) {
	o.Logf("backend: starting embedded %s ...", kind)
	if kind == NATS {
		return startEmbeddedNATS(ctx, o, reason)
	}
	return startMiniredis(o, reason)
}

// miniredisInstance is miniredis listening on 127.0.0.1.
type miniredisInstance struct {
	auth *Credentials

	mu     sync.Mutex
	m      *miniredis.Miniredis
	clock  *ttlClock
	info   Info
	down   bool
	closed bool
	stop   chan struct{} // ends the clock goroutine
}

// ttlTick is how often the embedded Redis's TTLs advance with the wall clock
// when no command comes.
const ttlTick = 10 * time.Millisecond

// ttlClock moves miniredis's TTLs with the wall clock. miniredis only
// expires keys and counts TTLs down on FastForward (ClockTTL mode does it on
// every command, which makes a 10 000-key spec take minutes: FastForward
// sorts every key). So the clock moves on a ticker, and, through a server
// pre-hook, right before every command that reads or sets a TTL: a TTL read
// is then exact, as on a real server, and a TTL set counts from when it was
// set (advancing only on the ticker, a TTL set between two ticks was also
// charged the time before it was set, and one read between two ticks looked
// longer than it was; both showed on a loaded machine). Any other command
// advances the clock too when an advance is due (the ticker's schedule):
// on a loaded machine the ticker's goroutine can wake far later than its
// tick, and a Get 50 ms after a 1 ms TTL still found the key. A key may
// still expire up to a tick late, within the suites' expiry margin.
//
// The tick backs off with the cost of an advance (nextTick): FastForward
// sorts every key under miniredis's lock, so with the 32 000 keys of a
// contention spec a 10 ms ticker kept the server busy sorting and that one
// spec took three minutes.
type ttlClock struct {
	m    *miniredis.Miniredis
	mu   sync.Mutex
	last time.Time
	due  time.Time // when the next advance is due: last + nextTick(its cost)
}

func newTTLClock(m *miniredis.Miniredis) *ttlClock {
	now := time.Now()
	return &ttlClock{m: m, last: now, due: now.Add(ttlTick)}
}

// advance moves the TTLs by the time passed since the last advance, when
// forced or when an advance is due, and returns what it cost (0 when it
// did not advance).
func (c *ttlClock) advance(force bool) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if !force && now.Before(c.due) {
		return 0
	}
	if d := now.Sub(c.last); d > 0 {
		c.m.FastForward(d)
		c.last = now
	}
	cost := time.Since(now)
	c.due = now.Add(nextTick(cost))
	return cost
}

// hook advances the clock before every command that reads or sets a TTL,
// and before any other when an advance is due (set it again after a
// Restart, which makes a new server).
func (c *ttlClock) hook() {
	c.m.Server().SetPreHook(func(_ *mrserver.Peer, cmd string, args ...string) bool {
		c.advance(touchesTTL(cmd, args))
		return false
	})
}

// touchesTTL reports whether a command (cmd in upper case) reads or sets a
// TTL. EXEC counts: a transaction may set TTLs, and its commands ran the
// hook when they were queued, not when they run.
func touchesTTL(cmd string, args []string) bool {
	switch cmd {
	case "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT",
		"PERSIST", "SETEX", "PSETEX", "GETEX", "EXEC":
		return true
	case "SET":
		for _, a := range args[min(len(args), 2):] {
			switch strings.ToUpper(a) {
			case "EX", "PX", "EXAT", "PXAT":
				return true
			}
		}
	}
	return false
}

// ttlShare bounds the share of the server's time the ticker takes for
// advancing: after an advance that took d, the next waits at least
// d × (1/ttlShare - 1).
const ttlShare = 0.1

// nextTick is the wait before the next advance when the last one took cost:
// ttlTick, or longer when advances are costly (many keys), so the ticker
// holds miniredis's lock at most ttlShare of the time.
func nextTick(cost time.Duration) time.Duration {
	return max(ttlTick, time.Duration(float64(cost)*(1/ttlShare-1)))
}

// run advances the clock until stop closes, waiting nextTick between
// advances.
func (c *ttlClock) run(stop <-chan struct{}) {
	t := time.NewTimer(ttlTick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			t.Reset(nextTick(c.advance(true)))
		}
	}
}

var _ Outager = (*miniredisInstance)(nil)

func startMiniredis(o Options, reason string) (Instance, error) {
	m := miniredis.NewMiniRedis()
	switch {
	case o.Auth.redisACLUser():
		m.RequireUserAuth(o.Auth.Username, o.Auth.Password)
	case o.Auth != nil:
		m.RequireAuth(o.Auth.Password)
	}
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, harnessErr("start miniredis: %w", err)
	}
	stop := make(chan struct{})
	// TTLs follow the wall clock, as on a real server (by default miniredis
	// only moves them with FastForward).
	clock := newTTLClock(m)
	clock.hook()
	go clock.run(stop)
	return &miniredisInstance{auth: o.Auth, m: m, clock: clock, stop: stop, info: Info{
		Kind: Redis, Provider: Embedded, Address: m.Addr(), Reason: reason,
		ServerVersion: moduleVersion("miniredis", "github.com/alicebob/miniredis/v2"),
	}}, nil
}

func (r *miniredisInstance) Info() Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

func (r *miniredisInstance) PluginConfig() (map[string]any, map[string]string) {
	return pluginConfig(Redis, r.Info().Address, r.auth)
}

// Persistent is true: miniredis keeps its data in memory across Close and
// Restart.
func (r *miniredisInstance) Persistent() bool { return true }

// Down closes the listener and every connection.
func (r *miniredisInstance) Down(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errClosed
	}
	r.m.Close()
	r.down = true
	return nil
}

// Up listens again on the same port.
func (r *miniredisInstance) Up(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errClosed
	}
	if !r.down {
		return nil
	}
	if err := r.m.Restart(); err != nil {
		return harnessErr("restart miniredis: %w", err)
	}
	r.clock.hook()
	r.down = false
	return nil
}

func (r *miniredisInstance) Close(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.stop)
		r.m.Close()
	}
	return nil
}

// natsEmbedded is nats-server with JetStream, in this process.
type natsEmbedded struct {
	auth    *Credentials
	dir     string
	timeout time.Duration
	um      *natsUsers // nil without an admin user

	mu     sync.Mutex
	srv    *server.Server
	port   int
	info   Info
	closed bool
}

var _ Outager = (*natsEmbedded)(nil)

func startEmbeddedNATS(ctx context.Context, o Options, reason string) (Instance, error) {
	dir, err := os.MkdirTemp("", "prism-nats-")
	if err != nil {
		return nil, harnessErr("create data dir: %w", err)
	}
	n := &natsEmbedded{auth: o.Auth, dir: dir, timeout: o.StartTimeout, port: server.RANDOM_PORT,
		info: Info{Kind: NATS, Provider: Embedded, Reason: reason, ServerVersion: "nats-server " + server.VERSION}}
	if o.Auth != nil && o.Auth.Username != "" {
		// Users, not a single user, so that the auth specs can add some.
		n.um, _ = newNATSUsers(func() string { return n.Info().Address }, o.Auth, n.reloadUsers)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.startLocked(ctx); err != nil {
		return n, harnessErr("start embedded nats: %w", err)
	}
	n.info.Address = loopback(n.port)
	return n, nil
}

// options are the server options but users.
func (n *natsEmbedded) options() *server.Options {
	return &server.Options{
		Host: "127.0.0.1", Port: n.port, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: n.dir,
	}
}

// reloadUsers applies a new user list to the running server (a restarted
// one starts with it).
func (n *natsEmbedded) reloadUsers(_ context.Context, users []natsUser) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return nil
	}
	opts := n.options()
	opts.Users = serverUsers(users)
	return n.srv.ReloadOptions(opts)
}

func (n *natsEmbedded) users() (Users, error) {
	if n.um == nil {
		return nil, errNoAdmin(NATS)
	}
	return n.um, nil
}

// serverUsers turns users into nats-server users with their permissions.
func serverUsers(users []natsUser) []*server.User {
	out := make([]*server.User, 0, len(users))
	for _, u := range users {
		su := &server.User{Username: u.name, Password: u.password}
		if u.scope != "" {
			p := natsplugin.PermissionsFor(natsScope(u.scope))
			su.Permissions = &server.Permissions{Publish: &server.SubjectPermission{Allow: p.Publish},
				Subscribe: &server.SubjectPermission{Allow: p.Subscribe}}
		}
		out = append(out, su)
	}
	return out
}

// startLocked runs a new server on n.port (random the first time) and dir.
func (n *natsEmbedded) startLocked(ctx context.Context) error {
	opts := n.options()
	if n.um != nil {
		opts.Users = serverUsers(n.um.all())
	} else if a := n.auth; a != nil {
		if a.Token != "" {
			opts.Authorization = a.Token
		} else {
			opts.Username, opts.Password = a.Username, a.Password
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("create server: %w", err)
	}
	go s.Start()
	wait := n.timeout
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if !s.ReadyForConnections(wait) {
		s.Shutdown()
		s.WaitForShutdown()
		return fmt.Errorf("wait for nats: not ready within %s", wait.Round(time.Millisecond))
	}
	n.srv = s
	n.port = s.Addr().(*net.TCPAddr).Port
	return nil
}

func (n *natsEmbedded) Info() Info {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.info
}

func (n *natsEmbedded) PluginConfig() (map[string]any, map[string]string) {
	return pluginConfig(NATS, n.Info().Address, n.auth)
}

// Persistent is true: the new server uses the same JetStream store dir.
func (n *natsEmbedded) Persistent() bool { return true }

// Down shuts the server down.
func (n *natsEmbedded) Down(context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errClosed
	}
	n.shutdownLocked()
	return nil
}

// Up starts a new server on the same port and store dir.
func (n *natsEmbedded) Up(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errClosed
	}
	if n.srv != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	if err := n.startLocked(ctx); err != nil {
		return harnessErr("restart embedded nats: %w", err)
	}
	return nil
}

func (n *natsEmbedded) shutdownLocked() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// Close shuts the server down and removes its store dir.
func (n *natsEmbedded) Close(context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	n.shutdownLocked()
	if err := os.RemoveAll(n.dir); err != nil {
		return harnessErr("remove data dir: %w", err)
	}
	return nil
}
