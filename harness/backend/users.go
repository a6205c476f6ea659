package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	natsplugin "github.com/prism-suite/prism/backends/nats"
)

// Users manages the users of a backend instance, for the auth specs: users
// confined to a scope (the data of one namespace), second credentials for a
// rotation, revocation, and probes of what a confined user must not do.
//
// An instance the harness started with [Options.Auth] (whose credentials
// become the admin's; for redis an ACL user, for nats a user, not a token)
// provides it, with the container, process and (nats only) embedded
// providers; miniredis has no ACLs. Get it with [UsersOf].
//
// Redis: a user of scope s is an ACL user with "~s:* &s:* +@all -@dangerous"
// (the default user is off), and plugins of the scope use key_prefix "s:".
// NATS: a user of scope s has exactly the permissions
// nats.PermissionsFor lists for subject_prefix s and a stream and object
// store of its own ([Users.ScopeConfig]).
type Users interface {
	// ScopeConfig returns the plugin config fields that keep a plugin inside
	// scope (redis: key_prefix; nats: subject_prefix, stream, payload_bucket).
	ScopeConfig(scope string) map[string]any
	// AddUser creates user name confined to scope, with fresh random
	// credentials, and returns them once the backend accepts them.
	AddUser(ctx context.Context, name, scope string) (Credentials, error)
	// AddCredentials gives user name new credentials that are valid together
	// with its current ones (redis: a second password; nats: a second user
	// with the same permissions), for a rotation, and returns them.
	AddCredentials(ctx context.Context, name string) (Credentials, error)
	// Revoke makes c invalid and returns once the backend refuses it. The
	// backend may drop connections authenticated with it (nats does).
	Revoke(ctx context.Context, c Credentials) error
	// Authenticate connects with c and returns the backend's answer: nil
	// when it accepts c.
	Authenticate(ctx context.Context, c Credentials) error
	// TryOutside connects with c and tries to write into scope other, and to
	// run an administrative command (redis: FLUSHALL; nats: delete other's
	// stream). It returns the backend's answer to each: nil means the
	// backend let c do it (and it was done).
	TryOutside(ctx context.Context, c Credentials, other string) (write, admin error)
	// PluginCredentials returns c as the credentials map a plugin takes.
	PluginCredentials(c Credentials) map[string]string
	// Suspend switches user name off and drops every connection
	// authenticated as it (the credentials of AddCredentials included), and
	// returns once the backend refuses the user: whoever was connected as
	// it gets an error on their next command. Redis: ACL SETUSER name off,
	// CLIENT KILL USER name; NATS: the user leaves the config, which a
	// reload applies to connected clients too.
	Suspend(ctx context.Context, name string) error
	// Restore switches user name on again, with the credentials it had, and
	// returns once the backend accepts it.
	Restore(ctx context.Context, name string) error
}

// UsersOf returns the user manager of inst, or an error saying why it has
// none (a full sentence, for a skip reason).
func UsersOf(inst Instance) (Users, error) {
	if m, ok := inst.(interface{ users() (Users, error) }); ok {
		return m.users()
	}
	in := inst.Info()
	return nil, fmt.Errorf("the %s instance (provider %s) cannot manage users", in.Kind, in.Provider)
}

// errNoAdmin is why an instance started without Options.Auth has no Users.
func errNoAdmin(kind Kind) error {
	return fmt.Errorf("the %s instance was started without admin credentials (Options.Auth), so it cannot manage users", kind)
}

func secret() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "pw-" + hex.EncodeToString(b[:])
}

// redisUsers manages ACL users through the admin connection. Users made
// with ACL SETUSER live in the server's memory only, so it keeps the commands
// and replays them when the server comes back from an outage.
type redisUsers struct {
	addr  func() string
	admin Credentials

	mu  sync.Mutex
	log [][]any // ACL SETUSER arguments, in order
}

// newRedisUsers returns the user manager of a redis instance started with
// auth, or nil when auth is not an ACL user.
func newRedisUsers(addr func() string, auth *Credentials) *redisUsers {
	if !auth.redisACLUser() {
		return nil
	}
	return &redisUsers{addr: addr, admin: *auth}
}

// redisUsersOf returns r as Users, or why there is none.
func redisUsersOf(r *redisUsers) (Users, error) {
	if r == nil {
		return nil, errors.New("the redis instance was started without an admin ACL user (Options.Auth with a Username), so it cannot manage users")
	}
	return r, nil
}

// replay runs the ACL commands again on a restarted server at addr (given,
// since the instance's lock is held).
func (r *redisUsers) replay(ctx context.Context, addr string) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := redis.NewClient(&redis.Options{Addr: addr, Username: r.admin.Username, Password: r.admin.Password, MaxRetries: -1,
		PoolSize: 1, DialTimeout: 2 * time.Second, ContextTimeoutEnabled: true, DisableIdentity: true, Protocol: 2})
	defer c.Close()
	for _, args := range r.log {
		if err := c.Do(ctx, append([]any{"ACL", "SETUSER"}, args...)...).Err(); err != nil {
			return fmt.Errorf("restore redis acl users: %w", err)
		}
	}
	return nil
}

func (r *redisUsers) client(c Credentials) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.addr(), Username: c.Username, Password: c.Password, MaxRetries: -1,
		PoolSize: 1, DialTimeout: 2 * time.Second, ContextTimeoutEnabled: true, DisableIdentity: true, Protocol: 2})
}

func (r *redisUsers) acl(ctx context.Context, args ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.client(r.admin)
	defer c.Close()
	if err := c.Do(ctx, append([]any{"ACL", "SETUSER"}, args...)...).Err(); err != nil {
		return fmt.Errorf("set redis acl user: %w", err)
	}
	r.log = append(r.log, args)
	return nil
}

func (r *redisUsers) ScopeConfig(scope string) map[string]any {
	return map[string]any{"key_prefix": scope + ":"}
}

func (r *redisUsers) AddUser(ctx context.Context, name, scope string) (Credentials, error) {
	c := Credentials{Username: name, Password: secret()}
	err := r.acl(ctx, name, "reset", "on", ">"+c.Password, "~"+scope+":*", "&"+scope+":*", "+@all", "-@dangerous")
	return c, err
}

func (r *redisUsers) AddCredentials(ctx context.Context, name string) (Credentials, error) {
	c := Credentials{Username: name, Password: secret()}
	return c, r.acl(ctx, name, ">"+c.Password)
}

func (r *redisUsers) Revoke(ctx context.Context, c Credentials) error {
	return r.acl(ctx, c.Username, "<"+c.Password)
}

// Suspend runs ACL SETUSER name off, then CLIENT KILL USER name (switching
// a user off leaves its open connections authenticated).
func (r *redisUsers) Suspend(ctx context.Context, name string) error {
	if err := r.acl(ctx, name, "off"); err != nil {
		return err
	}
	c := r.client(r.admin)
	defer c.Close()
	if err := c.Do(ctx, "CLIENT", "KILL", "USER", name).Err(); err != nil {
		return fmt.Errorf("kill the redis connections of user %q: %w", name, err)
	}
	return nil
}

// Restore runs ACL SETUSER name on.
func (r *redisUsers) Restore(ctx context.Context, name string) error {
	return r.acl(ctx, name, "on")
}

func (r *redisUsers) Authenticate(ctx context.Context, c Credentials) error {
	cl := r.client(c)
	defer cl.Close()
	return cl.Ping(ctx).Err()
}

func (r *redisUsers) TryOutside(ctx context.Context, c Credentials, other string) (error, error) {
	cl := r.client(c)
	defer cl.Close()
	return cl.Set(ctx, other+":prism-outside-probe", "x", time.Minute).Err(), cl.FlushAll(ctx).Err()
}

func (r *redisUsers) PluginCredentials(c Credentials) map[string]string {
	return c.pluginCredentials(Redis)
}

// natsUser is a user of a natsUsers.
type natsUser struct {
	name, password, scope string
}

// natsUsers manages the users of a nats-server: it keeps the list and
// applies it with apply (a config reload).
type natsUsers struct {
	addr  func() string
	admin Credentials
	apply func(ctx context.Context, users []natsUser) error

	mu        sync.Mutex
	list      []natsUser
	count     map[string]int        // credentials given per user name
	suspended map[string][]natsUser // users Suspend took out of list, by name
}

func newNATSUsers(addr func() string, auth *Credentials, apply func(context.Context, []natsUser) error) (*natsUsers, error) {
	if auth == nil || auth.Username == "" {
		return nil, errors.New("the nats instance was started without an admin user (Options.Auth with a Username and Password), so it cannot manage users")
	}
	return &natsUsers{addr: addr, admin: *auth, apply: apply, count: map[string]int{}, suspended: map[string][]natsUser{}}, nil
}

// all returns the admin and every user, for a server config.
func (n *natsUsers) all() []natsUser {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]natsUser{{name: n.admin.Username, password: n.admin.Password}}, n.list...)
}

// natsScope returns the plugin options of scope.
func natsScope(scope string) natsplugin.Options {
	o := natsplugin.DefaultOptions()
	tok := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, scope)
	o.SubjectPrefix = tok
	o.Stream = "PRISM_" + strings.ToUpper(tok)
	o.PayloadBucket = "PRISM_" + strings.ToUpper(tok) + "_PAYLOADS"
	return o
}

func (n *natsUsers) ScopeConfig(scope string) map[string]any {
	o := natsScope(scope)
	return map[string]any{"subject_prefix": o.SubjectPrefix, "stream": o.Stream, "payload_bucket": o.PayloadBucket}
}

func (n *natsUsers) change(ctx context.Context, f func()) error {
	n.mu.Lock()
	f()
	list := append([]natsUser{{name: n.admin.Username, password: n.admin.Password}}, n.list...)
	n.mu.Unlock()
	if err := n.apply(ctx, list); err != nil {
		return fmt.Errorf("reload nats users: %w", err)
	}
	return nil
}

func (n *natsUsers) AddUser(ctx context.Context, name, scope string) (Credentials, error) {
	c := Credentials{Username: name, Password: secret()}
	err := n.change(ctx, func() {
		n.count[name] = 1
		n.list = append(n.list, natsUser{name: name, password: c.Password, scope: scope})
	})
	if err != nil {
		return c, err
	}
	return c, n.await(ctx, c, true)
}

func (n *natsUsers) AddCredentials(ctx context.Context, name string) (Credentials, error) {
	var c Credentials
	var found bool
	err := n.change(ctx, func() {
		for _, u := range n.list {
			if u.name == name {
				found = true
				n.count[name]++
				c = Credentials{Username: fmt.Sprintf("%s-%d", name, n.count[name]), Password: secret()}
				n.list = append(n.list, natsUser{name: c.Username, password: c.Password, scope: u.scope})
				return
			}
		}
	})
	if err != nil {
		return c, err
	}
	if !found {
		return c, fmt.Errorf("add nats credentials: no user %q", name)
	}
	return c, n.await(ctx, c, true)
}

func (n *natsUsers) Revoke(ctx context.Context, c Credentials) error {
	err := n.change(ctx, func() {
		out := n.list[:0]
		for _, u := range n.list {
			if u.name != c.Username {
				out = append(out, u)
			}
		}
		n.list = out
	})
	if err != nil {
		return err
	}
	return n.await(ctx, c, false)
}

// owns reports whether u is user name or one of its AddCredentials users.
func owns(name string, u natsUser) bool {
	return u.name == name || strings.HasPrefix(u.name, name+"-") && strings.Trim(u.name[len(name)+1:], "0123456789") == ""
}

// Suspend takes user name (and its AddCredentials users) out of the
// server's config; nats-server closes their connections on the reload.
func (n *natsUsers) Suspend(ctx context.Context, name string) error {
	var probe natsUser
	err := n.change(ctx, func() {
		out := n.list[:0]
		for _, u := range n.list {
			if owns(name, u) {
				n.suspended[name] = append(n.suspended[name], u)
				continue
			}
			out = append(out, u)
		}
		n.list = out
	})
	if err != nil {
		return err
	}
	n.mu.Lock()
	if us := n.suspended[name]; len(us) > 0 {
		probe = us[0]
	}
	n.mu.Unlock()
	if probe.name == "" {
		return fmt.Errorf("suspend nats user: no user %q", name)
	}
	return n.await(ctx, Credentials{Username: probe.name, Password: probe.password}, false)
}

// Restore puts the users Suspend took out back into the config.
func (n *natsUsers) Restore(ctx context.Context, name string) error {
	var back []natsUser
	err := n.change(ctx, func() {
		back = n.suspended[name]
		delete(n.suspended, name)
		n.list = append(n.list, back...)
	})
	if err != nil {
		return err
	}
	if len(back) == 0 {
		return fmt.Errorf("restore nats user: user %q is not suspended", name)
	}
	return n.await(ctx, Credentials{Username: back[0].name, Password: back[0].password}, true)
}

// await polls until the server accepts c (or refuses it): a config reload
// by signal applies a moment after the signal.
func (n *natsUsers) await(ctx context.Context, c Credentials, accepted bool) error {
	for {
		err := n.Authenticate(ctx, c)
		if (err == nil) == accepted {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for nats to apply its users (user %q accepted: %v): %w (last: %v)", c.Username, !accepted, ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (n *natsUsers) connect(ctx context.Context, c Credentials, opts ...nats.Option) (*nats.Conn, error) {
	timeout := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(dl)), time.Millisecond)
	}
	opts = append(opts, nats.Timeout(timeout), nats.NoReconnect(), nats.Name("prism-harness-users"),
		nats.UserInfo(c.Username, c.Password))
	return nats.Connect("nats://"+n.addr(), opts...)
}

func (n *natsUsers) Authenticate(ctx context.Context, c Credentials) error {
	nc, err := n.connect(ctx, c)
	if err != nil {
		return err
	}
	nc.Close()
	return nil
}

// outsideWait bounds the wait for a permissions violation, which NATS
// reports asynchronously; it normally comes within milliseconds.
const outsideWait = 2 * time.Second

func (n *natsUsers) TryOutside(ctx context.Context, c Credentials, other string) (error, error) {
	errs := make(chan error, 16)
	nc, err := n.connect(ctx, c, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		errs <- err
	}))
	if err != nil {
		return err, err
	}
	defer nc.Close()
	o := natsScope(other)
	try := func(subject string) error {
		if err := nc.Publish(subject, []byte("prism outside probe")); err != nil {
			return err
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			return err
		}
		select {
		case err := <-errs:
			return err
		case <-time.After(outsideWait):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return try(o.SubjectPrefix + ".t.prism-outside-probe"), try("$JS.API.STREAM.DELETE." + o.Stream)
}

func (n *natsUsers) PluginCredentials(c Credentials) map[string]string {
	return c.pluginCredentials(NATS)
}

// natsConfig returns a nats-server config file granting users their
// permissions (the admin has all).
func natsConfig(users []natsUser) string {
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	list := func(xs []string) string {
		out := make([]string, len(xs))
		for i, x := range xs {
			out[i] = q(x)
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	for _, u := range users {
		fmt.Fprintf(&b, "    {user: %s, password: %s", q(u.name), q(u.password))
		if u.scope != "" {
			p := natsplugin.PermissionsFor(natsScope(u.scope))
			fmt.Fprintf(&b, ", permissions: {publish: {allow: %s}, subscribe: {allow: %s}}", list(p.Publish), list(p.Subscribe))
		}
		b.WriteString("}\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}
