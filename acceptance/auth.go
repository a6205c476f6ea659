package acceptance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"google.golang.org/protobuf/proto"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/devidp"
	"github.com/prism-suite/prism/harness/oidc"
	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	"github.com/prism-suite/prism/proto/handshake"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/reference/auth"
	refdevidp "github.com/prism-suite/prism/reference/devidp"
	"github.com/prism-suite/prism/suites/fixture"
)

// With Config.Auth (prism-accept --auth) a run also certifies auth:
//
//   - the backend starts with an admin user (redis: an ACL user with the
//     default user off; nats: a users list), which the plugin under test
//     uses, so that the harness can create users confined to one
//     namespace's data (harness/backend.Users);
//   - a test OIDC issuer (harness/oidc) runs in this process, or with
//     --issuer dev-idp prism-dev-idp runs as a process (IssuerDevIdP);
//   - a second reference proxy runs with auth on, trusting that issuer
//     (jwks_refetch_interval 500ms and jwks_max_age 1s, so that key
//     rotation shows within a spec), serving two namespaces
//     "<namespace>-auth-a" and "<namespace>-auth-b", each with a plugin
//     process of its own running as that namespace's backend user;
//   - the auth suite (suites/auth) runs against them, and the run declares
//     auth.jwt and auth.namespace for that proxy (no plugin declares them).
//
// --label-filter auth runs only the auth specs (go tool task accept SUITE=auth).

// Auth timings of the proxy the auth suite runs against.
const (
	authRefetchInterval = 500 * time.Millisecond
	authMaxAge          = time.Second
)

// Issuers of an auth run (Config.Issuer, --issuer).
const (
	// IssuerTest is harness/oidc's in-process test issuer, which mints any
	// token, forged ones included.
	IssuerTest = "test"
	// IssuerDevIdP is prism-dev-idp (reference/devidp) run as a process:
	// its user dev@local.prism gets tokens through the device flow. Its
	// groups are the proxy's grants (grants.claim: groups): read and write
	// on the first namespace by the pattern, read on the second through
	// grants.mapping of the group devIdPReaders. Its refresh tokens live
	// devIdPRefreshTTL, so that the suite sees one expire.
	IssuerDevIdP = "dev-idp"

	devIdPReaders    = "prism-suite-readers"
	devIdPRefreshTTL = 3 * time.Second
)

// authRun is the auth side of a run with Config.Auth.
type authRun struct {
	iss   *oidc.Issuer // IssuerTest
	idp   *devidp.IdP  // IssuerDevIdP
	px    *hproxy.Proxy
	fx    *fixture.Fixture
	users *recordingUsers // nil when the backend cannot manage users
	err   error           // a harness error: every auth spec reports it
}

// recordingUsers remembers every secret it hands out, so that reports can
// redact them.
type recordingUsers struct {
	backend.Users
	mu      sync.Mutex
	secrets []string
}

func (u *recordingUsers) record(c backend.Credentials, err error) (backend.Credentials, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.secrets = append(u.secrets, c.Password, c.Token)
	return c, err
}

// AddUser implements backend.Users.
func (u *recordingUsers) AddUser(ctx context.Context, name, scope string) (backend.Credentials, error) {
	return u.record(u.Users.AddUser(ctx, name, scope))
}

// AddCredentials implements backend.Users.
func (u *recordingUsers) AddCredentials(ctx context.Context, name string) (backend.Credentials, error) {
	return u.record(u.Users.AddCredentials(ctx, name))
}

// authSecrets returns the secrets of the backend users the run created.
func (r *Session) authSecrets() []string {
	if r.auth == nil || r.auth.users == nil {
		return nil
	}
	r.auth.users.mu.Lock()
	defer r.auth.users.mu.Unlock()
	return slices.Clone(r.auth.users.secrets)
}

// authBackend gives the backend an admin user when the run certifies auth.
func (c Config) authBackend(o backend.Options) backend.Options {
	if !c.Auth || o.Auth != nil || c.Backend == backend.Memstore {
		return o
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	o.Auth = &backend.Credentials{Username: "prism-admin", Password: "admin-" + hex.EncodeToString(b[:])}
	return o
}

// proxyDeclares reports whether the run declares capability n for the
// reference proxy (auth.jwt and auth.namespace with Config.Auth,
// admin.namespaces with Config.Admin).
func (r *Session) proxyDeclares(n capability.Name) bool {
	return (r.cfg.Auth && slices.Contains(capability.ProxyAuthCapabilities, n)) ||
		(r.cfg.Admin && n == capability.AdminNamespaces)
}

// authFixture is the provider of the auth suite.
func (r *Session) authFixture() *fixture.Fixture {
	GinkgoHelper()
	r.fixture()
	if r.auth == nil {
		fixture.HarnessFail(fmt.Errorf("the auth proxy was not set up"))
	}
	if r.auth.err != nil {
		fixture.HarnessFail(r.auth.err)
	}
	return r.auth.fx
}

// setupAuth starts the issuer and the auth proxy, after the plugin under
// test is set up.
func (r *Session) setupAuth() {
	a := &authRun{}
	r.auth = a
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeouts.Handshake+r.cfg.Timeouts.Eventually)
	defer cancel()
	names := []string{r.cfg.Namespace + "-auth-a", r.cfg.Namespace + "-auth-b"}
	ac := auth.DefaultConfig()
	switch r.cfg.Issuer {
	case IssuerDevIdP:
		o := devidp.DefaultOptions()
		o.Binary = r.cfg.DevIdPBinary
		o.Groups = []string{"prism:" + names[0] + ":read", "prism:" + names[0] + ":write", devIdPReaders}
		o.RefreshTokenTTL = devIdPRefreshTTL
		if a.idp, a.err = devidp.Start(ctx, o); a.err != nil {
			return
		}
		ac.Issuer, ac.Audience = a.idp.Issuer, o.Audience
		ac.Grants.Claim = refdevidp.GroupsClaim
		ac.Grants.Mapping = map[string]auth.NamespaceGrants{devIdPReaders: {Read: []string{names[1]}}}
	default:
		if a.iss, a.err = oidc.Start(oidc.DefaultOptions()); a.err != nil {
			return
		}
		ac.Issuer, ac.Audience = a.iss.URL(), a.iss.Audience()
	}
	var users backend.Users
	bu, usersErr := backend.UsersOf(r.inst)
	if bu != nil {
		a.users = &recordingUsers{Users: bu}
		users = a.users
	}
	init, err := r.initRequest()
	if err != nil {
		a.err = err
		return
	}
	declared := r.fx.Declared()
	var patterns []string
	for _, p := range []string{"keyvalue", "pubsub"} {
		if declared.Has(capability.Name(p + ".basic")) {
			patterns = append(patterns, p)
		}
	}
	var nss []hproxy.Namespace
	for _, name := range names {
		n := hproxy.Namespace{Name: name, Patterns: patterns, Plugin: r.cfg.Plugin, Args: r.cfg.PluginArgs,
			Config: init.GetConfig().AsMap(), Credentials: maps.Clone(init.GetCredentials()), Instance: name}
		switch {
		case users != nil:
			// Each namespace's plugin runs as a backend user confined to it.
			maps.Copy(n.Config, users.ScopeConfig(name))
			c, err := users.AddUser(ctx, "prism-"+name, name)
			if err != nil {
				a.err = fmt.Errorf("create backend user of %s: %w", name, err)
				return
			}
			n.Credentials = users.PluginCredentials(c)
		case r.cfg.Backend == backend.Redis:
			n.Config["key_prefix"] = name + ":"
		}
		nss = append(nss, n)
	}
	ac.JWKSRefetchInterval, ac.JWKSMaxAge, ac.HTTPTimeout = authRefetchInterval, authMaxAge, 5*time.Second
	if a.px, err = hproxy.Start(ctx, r.authProxyOptions(&ac), nss...); err != nil {
		a.err = fmt.Errorf("start prism-proxy %s with auth on: %w", r.cfg.ProxyBinary, err)
		return
	}
	for _, n := range names {
		if err := a.px.WaitServing(ctx, n); err != nil {
			a.err = fmt.Errorf("auth proxy namespace %q: %w; proxy stderr:\n%s", n, err, handshake.TruncateTail(a.px.Stderr(), stderrInReports))
			return
		}
	}
	r.cfg.Logf("auth: issuer %s (%s); proxy %s with auth on, serving %s and %s at %s after %v", ac.Issuer, r.cfg.Issuer, r.cfg.ProxyBinary,
		names[0], names[1], a.px.Addr, a.px.ReadyTime.Round(time.Millisecond))
	if usersErr != nil {
		r.cfg.Logf("auth: %v: the backend credential specs will be skipped", usersErr)
	}

	desc := proto.Clone(r.desc).(*lifecyclev1.DescribeResponse)
	for _, c := range capability.ProxyAuthCapabilities {
		desc.Capabilities = append(desc.Capabilities, &lifecyclev1.Capability{Name: string(c), InterfaceVersion: "v1"})
	}
	a.fx = r.fixtureWith("-auth", desc)
	a.fx.Auth = &fixture.Auth{
		Issuer: a.iss, DevIdP: a.idp, Proxy: a.px, Namespace: names[0], Other: names[1],
		ClockSkew: ac.ClockSkew, MaxTokenBytes: ac.MaxTokenBytes, RefetchInterval: ac.JWKSRefetchInterval, MaxAge: ac.JWKSMaxAge,
		MaxTokenLifetime: ac.MaxTokenLifetime,
		Direct:           target.Target{Via: target.Direct, Namespace: r.cfg.Namespace, Conn: r.proc.Conn},
		Users:            users, UsersErr: usersErr,
	}
}

// authProxyOptions are the options of a proxy a suite starts with auth on
// (the auth suite's, the admin suite's two): the binary under test, the
// plugin's environment, the run's drain timeout.
func (r *Session) authProxyOptions(ac *auth.Config) hproxy.Options {
	o := hproxy.DefaultOptions()
	o.Binary = r.cfg.ProxyBinary
	o.Env = r.cfg.PluginEnv
	o.DrainTimeout = r.cfg.Timeouts.Stop
	o.Auth = ac
	return o
}

// fixtureWith is the run's fixture for a suite with a set-up of its own
// (auth, admin): the same plugin, backend and timeouts, its own run id
// (suffix) and description.
func (r *Session) fixtureWith(suffix string, desc *lifecyclev1.DescribeResponse) *fixture.Fixture {
	fx := r.fx
	return &fixture.Fixture{
		Target: fx.Target, Description: desc, Lifecycle: fx.Lifecycle, Launch: fx.Launch, BadConfigs: fx.BadConfigs,
		Backend: fx.Backend, Timeouts: fx.Timeouts, RunID: fx.RunID + suffix, PluginPID: fx.PluginPID,
		ProbeUndeclared: fx.ProbeUndeclared,
	}
}

// teardownAuth stops the auth proxy and the issuer.
func (r *Session) teardownAuth(ctx context.Context) {
	if r.auth == nil {
		return
	}
	if r.auth.px != nil {
		if err := r.auth.px.Stop(ctx); err != nil {
			r.cfg.Logf("auth proxy: %v", err)
		}
	}
	if r.auth.iss != nil {
		r.auth.iss.Close()
	}
	if r.auth.idp != nil {
		r.auth.idp.Stop()
	}
}
