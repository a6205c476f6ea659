package acceptance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"google.golang.org/protobuf/proto"

	"github.com/prism-suite/prism/harness/oidc"
	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/proto/capability"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/reference/auth"
	refproxy "github.com/prism-suite/prism/reference/proxy"
	"github.com/prism-suite/prism/suites/fixture"
)

// With Config.Admin (prism-accept --admin) a run also certifies the
// reference proxy's admin API (admin.namespaces):
//
//   - a test OIDC issuer (harness/oidc) runs on 127.0.0.1;
//   - two reference proxies (--proxy) run with auth on, trusting it, and the
//     admin API on, sharing one admin store file, polled every 100ms;
//   - the admin suite (suites/admin) runs against them, creating namespaces
//     on the proxy's linked memstore driver, and the run declares
//     admin.namespaces for the proxy (no plugin declares it).
//
// --label-filter admin runs only the admin specs.

// Admin settings of the proxies the admin suite runs against.
const (
	adminRoleClaim   = "groups"
	adminRoleValue   = "prism-admin"
	adminPoll        = 100 * time.Millisecond
	adminBuiltin     = "memstore"
	adminStoreFile   = "admin-store.json"
	adminAuditSuffix = "-audit.jsonl"
)

// adminRun is the admin side of a run with Config.Admin.
type adminRun struct {
	iss     *oidc.Issuer
	px, px2 *hproxy.Proxy
	dir     string
	fx      *fixture.Fixture
	err     error // a harness error: every admin spec reports it
}

// adminFixture is the provider of the admin suite.
func (r *Session) adminFixture() *fixture.Fixture {
	GinkgoHelper()
	r.fixture()
	if r.admin == nil {
		fixture.HarnessFail(errors.New("the admin proxies were not set up"))
	}
	if r.admin.err != nil {
		fixture.HarnessFail(r.admin.err)
	}
	return r.admin.fx
}

// setupAdmin starts the issuer and the two admin proxies, after the plugin
// under test is set up.
func (r *Session) setupAdmin() {
	a := &adminRun{}
	r.admin = a
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeouts.Handshake+r.cfg.Timeouts.Eventually)
	defer cancel()
	if a.iss, a.err = oidc.Start(oidc.DefaultOptions()); a.err != nil {
		return
	}
	if a.dir, a.err = os.MkdirTemp("", "prism-admin-"); a.err != nil {
		return
	}
	ac := auth.DefaultConfig()
	ac.Issuer, ac.Audience = a.iss.URL(), a.iss.Audience()
	ac.HTTPTimeout = 5 * time.Second
	start := func(audit string) (*hproxy.Proxy, error) {
		o := r.authProxyOptions(&ac)
		o.Admin = &refproxy.AdminConfig{Listen: "127.0.0.1:0",
			Role:     refproxy.AdminRole{Claim: adminRoleClaim, Value: adminRoleValue},
			Store:    refproxy.AdminStore{File: filepath.Join(a.dir, adminStoreFile), PollInterval: adminPoll},
			AuditLog: filepath.Join(a.dir, audit+adminAuditSuffix)}
		px, err := hproxy.Start(ctx, o)
		if err != nil {
			return px, fmt.Errorf("start prism-proxy %s with the admin API on: %w", r.cfg.ProxyBinary, err)
		}
		return px, nil
	}
	if a.px, a.err = start("first"); a.err != nil {
		return
	}
	if a.px2, a.err = start("second"); a.err != nil {
		return
	}
	r.cfg.Logf("admin: issuer %s; proxies %s with the admin API at %s and %s, sharing %s", a.iss.URL(), r.cfg.ProxyBinary,
		a.px.AdminAddr, a.px2.AdminAddr, filepath.Join(a.dir, adminStoreFile))

	desc := &lifecyclev1.DescribeResponse{}
	if r.desc != nil {
		desc = proto.Clone(r.desc).(*lifecyclev1.DescribeResponse)
	}
	desc.Capabilities = append(desc.Capabilities, &lifecyclev1.Capability{Name: string(capability.AdminNamespaces), InterfaceVersion: "v1"})
	a.fx = r.fixtureWith("-admin", desc)
	a.fx.Admin = &fixture.Admin{Issuer: a.iss, Proxy: a.px, Second: a.px2, RoleClaim: adminRoleClaim, RoleValue: adminRoleValue,
		AuditLog: filepath.Join(a.dir, "first"+adminAuditSuffix), Builtin: adminBuiltin}
}

// teardownAdmin stops the admin proxies and the issuer and removes the
// store.
func (r *Session) teardownAdmin(ctx context.Context) {
	a := r.admin
	if a == nil {
		return
	}
	for _, px := range []*hproxy.Proxy{a.px2, a.px} {
		if px != nil {
			if err := px.Stop(ctx); err != nil {
				r.cfg.Logf("admin proxy: %v", err)
			}
		}
	}
	if a.iss != nil {
		a.iss.Close()
	}
	if a.dir != "" {
		_ = os.RemoveAll(a.dir)
	}
}
