package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	memstorepkg "github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/harness/oidc"
	adminv1 "github.com/prism-suite/prism/proto/prism/admin/v1"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/reference/auth"
	"github.com/prism-suite/prism/reference/proxy"
)

// gated is memstore whose Get of key "hold" waits for release (after
// telling entered), and which counts its Close calls.
type gated struct {
	*memstorepkg.Store
	entered chan struct{}
	release chan struct{}
	closed  *atomic.Int32
}

func (g gated) Get(ctx context.Context, key string) ([]byte, error) {
	if key == "hold" {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Store.Get(ctx, key)
}

func (g gated) Close(ctx context.Context) error {
	g.closed.Add(1)
	return g.Store.Close(ctx)
}

// adminRig is a proxy with the admin API on, its issuer and clients.
type adminRig struct {
	p       *proxy.Proxy
	iss     *oidc.Issuer
	cfg     proxy.Config
	admin   adminv1.AdminClient
	kv      keyvaluev1.KeyValueClient
	adminTk string // admin role, and read/write on the test namespaces
	userTk  string // read/write on the test namespaces, no admin role
	dir     string
	entered chan struct{}
	release chan struct{}
	closed  atomic.Int32
	// opts are more options of the proxies start runs.
	opts []proxy.Option
}

var rigNamespaces = []string{"static", "live", "other", "bad"}

func (r *adminRig) builtins() []proxy.Option {
	return append([]proxy.Option{proxy.WithPluginStderr(io.Discard),
		proxy.WithBuiltin("gated", func() sdk.Driver {
			return gated{Store: memstorepkg.New(), entered: r.entered, release: r.release, closed: &r.closed}
		})}, r.opts...)
}

func newAdminRig(t *testing.T) *adminRig {
	t.Helper()
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	r := &adminRig{iss: iss, dir: t.TempDir(), entered: make(chan struct{}, 4), release: make(chan struct{})}
	cfg := testConfig(builtinNamespace("static", "gated"))
	ac := auth.DefaultConfig()
	ac.Issuer, ac.Audience = iss.URL(), iss.Audience()
	cfg.Auth = &ac
	cfg.Admin = &proxy.AdminConfig{Listen: "127.0.0.1:0", Role: proxy.AdminRole{Claim: "groups", Value: "prism-admin"},
		Store:    proxy.AdminStore{File: filepath.Join(r.dir, "store.json"), PollInterval: 50 * time.Millisecond},
		AuditLog: filepath.Join(r.dir, "audit.jsonl")}
	r.cfg = cfg
	var scopes []string
	for _, ns := range rigNamespaces {
		scopes = append(scopes, "prism:"+ns+":read", "prism:"+ns+":write")
	}
	ca := iss.Claims("alice", scopes...)
	ca["groups"] = []string{"devs", "prism-admin"}
	r.adminTk = iss.MustMint(ca)
	cu := iss.Claims("bob", scopes...)
	cu["groups"] = "devs prism-admins"
	r.userTk = iss.MustMint(cu)
	r.p, r.kv, r.admin = r.start(t)
	return r
}

// start runs another proxy with the rig's config (and store).
func (r *adminRig) start(t *testing.T) (*proxy.Proxy, keyvaluev1.KeyValueClient, adminv1.AdminClient) {
	t.Helper()
	p, conn := startWith(t, r.cfg, r.builtins()...)
	if p.AdminAddr() == "" {
		t.Fatal("the admin API does not listen")
	}
	ac := dial(t, p.AdminAddr())
	t.Cleanup(func() { ac.Close() })
	return p, keyvaluev1.NewKeyValueClient(conn), adminv1.NewAdminClient(ac)
}

func (r *adminRig) ctx(t *testing.T, token string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	if token != "" {
		ctx = bearer(ctx, token)
	}
	return ctx
}

// data is a context for a data call on namespace ns.
func (r *adminRig) data(t *testing.T, ns string) context.Context {
	ctx, cancel := nsCtx(ns)
	t.Cleanup(cancel)
	return bearer(ctx, r.adminTk)
}

func gatedSpec(name, instance string) string {
	return "name: " + name + "\npattern: keyvalue\nplugin: {builtin: gated, instance: " + instance + "}\n"
}

func TestAdminNeedsAnAdminToken(t *testing.T) {
	r := newAdminRig(t)
	_, err := r.admin.ListNamespaces(r.ctx(t, ""), &adminv1.ListNamespacesRequest{})
	wantCode(t, "List without a token", err, codes.Unauthenticated)
	_, err = r.admin.ListNamespaces(r.ctx(t, r.adminTk+"x"), &adminv1.ListNamespacesRequest{})
	wantCode(t, "List with a forged token", err, codes.Unauthenticated)
	_, err = r.admin.CreateNamespace(r.ctx(t, r.userTk), &adminv1.CreateNamespaceRequest{Spec: gatedSpec("live", "a")})
	wantCode(t, "Create without the admin role", err, codes.PermissionDenied)
	l, err := r.admin.ListNamespaces(r.ctx(t, r.adminTk), &adminv1.ListNamespacesRequest{})
	wantCode(t, "List with an admin token", err, codes.OK)
	if len(l.GetNamespaces()) != 1 || l.GetNamespaces()[0].GetName() != "static" || l.GetNamespaces()[0].GetSource() != "config" {
		t.Errorf("List: got %v, want only the config namespace static (the refused Create applied nothing)", l.GetNamespaces())
	}
}

// TestAdminLiveChanges: a created namespace serves at once; an update
// sends new calls to the new plugin while a call in flight finishes on the
// old one, which is then stopped; a delete answers NotFound.
func TestAdminLiveChanges(t *testing.T) {
	r := newAdminRig(t)
	ctx := r.ctx(t, r.adminTk)
	c, err := r.admin.CreateNamespace(ctx, &adminv1.CreateNamespaceRequest{Spec: gatedSpec("live", "one")})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if c.GetNamespace().GetRevision() != 1 {
		t.Errorf("Create: revision %d, want 1", c.GetNamespace().GetRevision())
	}
	if _, err := r.kv.Set(r.data(t, "live"), &keyvaluev1.SetRequest{Key: "hold", Value: []byte("old")}); err != nil {
		t.Fatalf("Set right after Create: %v", err)
	}
	inflight := make(chan *keyvaluev1.GetResponse, 1)
	go func() {
		resp, err := r.kv.Get(r.data(t, "live"), &keyvaluev1.GetRequest{Key: "hold"})
		if err != nil {
			t.Errorf("the Get in flight across the update: %v, want it to complete", err)
		}
		inflight <- resp
	}()
	<-r.entered
	u, err := r.admin.UpdateNamespace(ctx, &adminv1.UpdateNamespaceRequest{Spec: gatedSpec("live", "two"), Revision: 1})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if u.GetNamespace().GetRevision() != 2 {
		t.Errorf("Update: revision %d, want 2", u.GetNamespace().GetRevision())
	}
	_, err = r.kv.Exists(r.data(t, "live"), &keyvaluev1.ExistsRequest{Key: "hold"})
	wantCode(t, "Exists after the update", err, codes.OK)
	if e, _ := r.kv.Exists(r.data(t, "live"), &keyvaluev1.ExistsRequest{Key: "hold"}); e.GetExists() {
		t.Error("after the update the key is still there: new calls still reach the old plugin instance")
	}
	if n := r.closed.Load(); n != 0 {
		t.Errorf("a driver was closed (%d) while a call was in flight on it", n)
	}
	close(r.release)
	if resp := <-inflight; string(resp.GetValue()) != "old" {
		t.Errorf("the Get in flight: got %q, want %q from the old config", resp.GetValue(), "old")
	}
	waitFor(t, "the old instance's driver to be closed once no namespace uses it", func() bool { return r.closed.Load() == 1 })

	if _, err := r.admin.DeleteNamespace(ctx, &adminv1.DeleteNamespaceRequest{Name: "live", Revision: 2}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = r.kv.Exists(r.data(t, "live"), &keyvaluev1.ExistsRequest{Key: "hold"})
	wantCode(t, "Exists after Delete", err, codes.NotFound)
	waitFor(t, "the deleted namespace's driver to be closed", func() bool { return r.closed.Load() == 2 })
	_, err = r.kv.Set(r.data(t, "static"), &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")})
	wantCode(t, "Set on the config namespace after the changes", err, codes.OK)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// TestAdminBadChangesChangeNothing: invalid specs are refused naming the
// field, and neither the served namespaces nor the store change.
func TestAdminBadChangesChangeNothing(t *testing.T) {
	r := newAdminRig(t)
	ctx := r.ctx(t, r.adminTk)
	if _, err := r.admin.CreateNamespace(ctx, &adminv1.CreateNamespaceRequest{Spec: gatedSpec("live", "one")}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	storeBefore, _ := os.ReadFile(r.cfg.Admin.Store.File)
	for _, tc := range []struct {
		what, spec string
		code       codes.Code
		field      string
	}{
		{"a plugin binary that does not exist", "name: bad\npattern: keyvalue\nplugin: {binary: /no/such/plugin}\n", codes.InvalidArgument, "namespace (bad).plugin.binary"},
		{"a name that is no name", "name: 'no name!'\npattern: keyvalue\nplugin: {builtin: gated}\n", codes.InvalidArgument, ".name"},
		{"an unknown field", "name: bad\npattern: keyvalue\nplugin: {builtin: gated, binry: x}\n", codes.InvalidArgument, "namespace (bad).plugin"},
		{"a builtin not linked", "name: bad\npattern: keyvalue\nplugin: {builtin: redys}\n", codes.InvalidArgument, "namespace (bad).plugin.builtin"},
		{"an inline credential", "name: bad\npattern: keyvalue\nplugin: {builtin: gated, credentials: {password: hunter2}}\n", codes.InvalidArgument, "namespace (bad).plugin.credentials.password"},
		{"no pattern", "name: bad\nplugin: {builtin: gated}\n", codes.InvalidArgument, "namespace (bad).pattern"},
		{"malformed YAML", "name: [bad\n", codes.InvalidArgument, "namespace"},
		{"the name of a config namespace", gatedSpec("static", "x"), codes.AlreadyExists, ""},
		{"the name of an admin namespace", gatedSpec("live", "x"), codes.AlreadyExists, ""},
	} {
		_, err := r.admin.CreateNamespace(ctx, &adminv1.CreateNamespaceRequest{Spec: tc.spec})
		wantCode(t, "Create with "+tc.what, err, tc.code)
		if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.field) {
			t.Errorf("Create with %s: message %q does not name %q", tc.what, msg, tc.field)
		}
	}
	_, err := r.admin.UpdateNamespace(ctx, &adminv1.UpdateNamespaceRequest{Spec: "name: live\npattern: keyvalue\nplugin: {binary: /no/such/plugin}\n", Revision: 1})
	wantCode(t, "Update to a missing binary", err, codes.InvalidArgument)
	_, err = r.admin.UpdateNamespace(ctx, &adminv1.UpdateNamespaceRequest{Spec: gatedSpec("static", "x")})
	wantCode(t, "Update of a config namespace", err, codes.FailedPrecondition)
	_, err = r.admin.UpdateNamespace(ctx, &adminv1.UpdateNamespaceRequest{Spec: gatedSpec("other", "x"), Revision: 1})
	wantCode(t, "Update of a namespace that does not exist", err, codes.NotFound)
	_, err = r.admin.DeleteNamespace(ctx, &adminv1.DeleteNamespaceRequest{Name: "static"})
	wantCode(t, "Delete of a config namespace", err, codes.FailedPrecondition)
	_, err = r.admin.DeleteNamespace(ctx, &adminv1.DeleteNamespaceRequest{Name: "../etc"})
	wantCode(t, "Delete of a name that is no name", err, codes.InvalidArgument)

	if after, _ := os.ReadFile(r.cfg.Admin.Store.File); string(after) != string(storeBefore) {
		t.Errorf("refused changes changed the store:\nbefore %s\nafter %s", storeBefore, after)
	}
	g, err := r.admin.GetNamespace(ctx, &adminv1.GetNamespaceRequest{Name: "live"})
	if err != nil || g.GetNamespace().GetRevision() != 1 || g.GetNamespace().GetSpec() != gatedSpec("live", "one") {
		t.Errorf("Get live after refused changes: %v, %v; want revision 1 with its spec", g, err)
	}
	l, _ := r.admin.ListNamespaces(ctx, &adminv1.ListNamespacesRequest{})
	if n := len(l.GetNamespaces()); n != 2 {
		t.Errorf("List after refused changes: %d namespaces (%v), want 2", n, l.GetNamespaces())
	}
	_, err = r.kv.Exists(r.data(t, "bad"), &keyvaluev1.ExistsRequest{Key: "k"})
	wantCode(t, "Exists on a refused namespace", err, codes.NotFound)
}

// TestAdminConcurrentUpdatesLoseNone: updates based on the same revision:
// exactly one wins, the others get Aborted.
func TestAdminConcurrentUpdatesLoseNone(t *testing.T) {
	r := newAdminRig(t)
	ctx := r.ctx(t, r.adminTk)
	if _, err := r.admin.CreateNamespace(ctx, &adminv1.CreateNamespaceRequest{Spec: gatedSpec("live", "one")}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	_, _, admin2 := r.start(t) // a second proxy sharing the store
	const n = 6
	codesSeen := make([]codes.Code, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := r.admin
			if i%2 == 1 {
				a = admin2
			}
			_, err := a.UpdateNamespace(ctx, &adminv1.UpdateNamespaceRequest{Spec: gatedSpec("live", "u"+string(rune('a'+i))), Revision: 1})
			codesSeen[i] = status.Code(err)
		}()
	}
	wg.Wait()
	ok, aborted := 0, 0
	for _, c := range codesSeen {
		switch c {
		case codes.OK:
			ok++
		case codes.Aborted:
			aborted++
		}
	}
	if ok != 1 || aborted != n-1 {
		t.Errorf("concurrent updates of revision 1: got codes %v, want exactly one OK and %d Aborted", codesSeen, n-1)
	}
	g, err := r.admin.GetNamespace(ctx, &adminv1.GetNamespaceRequest{Name: "live"})
	if err != nil || g.GetNamespace().GetRevision() != 2 {
		t.Errorf("Get after the concurrent updates: %v, %v; want revision 2", g, err)
	}
}

// TestAdminStorePersistsAndIsShared: a second proxy on the same store
// serves an admin namespace created through the first, a proxy started
// later serves it too, and a delete reaches both.
func TestAdminStorePersistsAndIsShared(t *testing.T) {
	r := newAdminRig(t)
	_, kv2, _ := r.start(t)
	ctx := r.ctx(t, r.adminTk)
	if _, err := r.admin.CreateNamespace(ctx, &adminv1.CreateNamespaceRequest{Spec: gatedSpec("live", "one")}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	waitFor(t, "the second proxy to serve the created namespace", func() bool {
		_, err := kv2.Set(r.data(t, "live"), &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")})
		return err == nil
	})
	_, kv3, admin3 := r.start(t)
	if _, err := kv3.Set(r.data(t, "live"), &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Errorf("a proxy started after the change: Set: %v", err)
	}
	if _, err := admin3.DeleteNamespace(ctx, &adminv1.DeleteNamespaceRequest{Name: "live"}); err != nil {
		t.Fatalf("Delete through the third proxy: %v", err)
	}
	waitFor(t, "the first proxy to drop the deleted namespace", func() bool {
		_, err := r.kv.Exists(r.data(t, "live"), &keyvaluev1.ExistsRequest{Key: "k"})
		return status.Code(err) == codes.NotFound // Exists answers NotFound only for the namespace
	})
}

// TestAdminAuditLog: every change and refusal is a JSON line with the
// subject, the action and the namespace before and after, without the
// config's secrets.
func TestAdminAuditLog(t *testing.T) {
	r := newAdminRig(t)
	ctx := r.ctx(t, r.adminTk)
	spec := "name: live\npattern: keyvalue\nplugin:\n  builtin: gated\n  config: {password: hunter2, url: 'redis://u:s3cr3t@127.0.0.1:6379', key_prefix: 'a:'}\n  credentials: {token: {env: LIVE_TOKEN}}\n"
	t.Setenv("LIVE_TOKEN", "tok-value")
	if _, err := r.admin.CreateNamespace(ctx, &adminv1.CreateNamespaceRequest{Spec: spec}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := r.admin.UpdateNamespace(ctx, &adminv1.UpdateNamespaceRequest{Spec: gatedSpec("live", "two"), Revision: 1}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	_, _ = r.admin.UpdateNamespace(ctx, &adminv1.UpdateNamespaceRequest{Spec: gatedSpec("live", "three"), Revision: 1})
	_, _ = r.admin.CreateNamespace(r.ctx(t, r.userTk), &adminv1.CreateNamespaceRequest{Spec: gatedSpec("other", "x")})
	if _, err := r.admin.DeleteNamespace(ctx, &adminv1.DeleteNamespaceRequest{Name: "live"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	b, err := os.ReadFile(r.cfg.Admin.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "s3cr3t", "tok-value"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the audit log holds the secret %q:\n%s", secret, b)
		}
	}
	var got []string
	var entries []proxy.AuditEntry
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e proxy.AuditEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		entries = append(entries, e)
		got = append(got, e.Subject+" "+e.Action+" "+e.Namespace+" "+e.Outcome)
	}
	want := []string{"alice namespace.create live ok", "alice namespace.update live ok", "alice namespace.update live Aborted",
		"bob namespace.create  PermissionDenied", "alice namespace.delete live ok"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\ngot  %q\nwant %q", got, want)
	}
	if len(entries) == len(want) {
		after, _ := json.Marshal(entries[0].After)
		for _, keep := range []string{`"key_prefix":"a:"`, `"env":"LIVE_TOKEN"`, `"password":"[REDACTED]"`, `redis://u:REDACTED@127.0.0.1:6379`} {
			if !strings.Contains(string(after), keep) {
				t.Errorf("the create's after %s lacks %s", after, keep)
			}
		}
		if entries[1].Before == nil || entries[1].After == nil || entries[4].Before == nil || entries[4].After != nil {
			t.Errorf("update and delete before/after: got %+v and %+v", entries[1], entries[4])
		}
	}
}

func TestAdminConfigNeedsAuth(t *testing.T) {
	cfg := testConfig()
	cfg.Admin = &proxy.AdminConfig{Listen: "127.0.0.1:0", Role: proxy.AdminRole{Claim: "groups"}, Store: proxy.AdminStore{File: "s.json"}}
	err := cfg.Validate()
	for _, want := range []string{"admin: needs auth", "admin.role.value: is required", "admin.audit_log: is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: got %v, want it to contain %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "namespaces: at least one") {
		t.Errorf("Validate: %v; with admin: a config needs no namespace", err)
	}
}

var _ grpc.ClientConnInterface = (*grpc.ClientConn)(nil)

// TestAdminPollNeverUndoesAChange: the store poll, running all the time,
// never applies a store content read before a change of this proxy's after
// it (which would take a created namespace away again for a moment).
func TestAdminPollNeverUndoesAChange(t *testing.T) {
	r := newAdminRig(t)
	r.cfg.Admin.Store.PollInterval = time.Millisecond
	r.cfg.Admin.Store.File = filepath.Join(t.TempDir(), "store.json")
	_, kvc, admin := r.start(t)
	ctx := r.ctx(t, r.adminTk)
	for i := range 40 {
		name := "live"
		if i%2 == 1 {
			name = "other"
		}
		c, err := admin.CreateNamespace(ctx, &adminv1.CreateNamespaceRequest{Spec: gatedSpec(name, "x")})
		if err != nil || c.GetNamespace().GetName() != name {
			t.Fatalf("Create %d: %v, %v", i, c, err)
		}
		if _, err := kvc.Exists(r.data(t, name), &keyvaluev1.ExistsRequest{Key: "k"}); err != nil {
			t.Fatalf("Exists right after Create %d: %v", i, err)
		}
		if _, err := admin.DeleteNamespace(ctx, &adminv1.DeleteNamespaceRequest{Name: name}); err != nil {
			t.Fatalf("Delete %d: %v", i, err)
		}
	}
}

// TestAdminStopsAPluginProcessNoNamespaceUses: a plugin process started
// for an admin namespace is stopped when the namespace is deleted, and one
// shared with another namespace keeps running until neither uses it.
func TestAdminStopsAPluginProcessNoNamespaceUses(t *testing.T) {
	r := newAdminRig(t)
	ctx := r.ctx(t, r.adminTk)
	spec := func(name string) string {
		return "name: " + name + "\npattern: keyvalue\nplugin: {binary: " + memstore + ", instance: shared}\n"
	}
	for _, n := range []string{"live", "other"} {
		if _, err := r.admin.CreateNamespace(ctx, &adminv1.CreateNamespaceRequest{Spec: spec(n)}); err != nil {
			t.Fatalf("Create %s: %v", n, err)
		}
	}
	st, err := r.admin.Status(ctx, &adminv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, pl := range st.GetPlugins() {
		if pl.GetMode() == "process" {
			if pid != 0 {
				t.Fatalf("two plugin processes for identical plugin blocks: %v", st.GetPlugins())
			}
			pid = int(pl.GetPid())
		}
	}
	if pid == 0 {
		t.Fatalf("no plugin process in Status: %v", st.GetPlugins())
	}
	alive := func() bool { return syscall.Kill(pid, 0) == nil }
	if _, err := r.admin.DeleteNamespace(ctx, &adminv1.DeleteNamespaceRequest{Name: "live"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.kv.Set(r.data(t, "other"), &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Errorf("Set on the namespace still using the shared process: %v", err)
	}
	if !alive() {
		t.Fatal("the shared plugin process stopped while a namespace still uses it")
	}
	if _, err := r.admin.DeleteNamespace(ctx, &adminv1.DeleteNamespaceRequest{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the plugin process to exit once no namespace uses it", func() bool { return !alive() })
}

// TestAdminDrainAndRestartAPlugin: a drained plugin's namespaces answer
// Unavailable until it is restarted; an unknown id is NotFound.
func TestAdminDrainAndRestartAPlugin(t *testing.T) {
	r := newAdminRig(t)
	ctx := r.ctx(t, r.adminTk)
	st, err := r.admin.Status(ctx, &adminv1.StatusRequest{})
	if err != nil || len(st.GetPlugins()) != 1 || len(st.GetNamespaces()) != 1 || !st.GetNamespaces()[0].GetServing() {
		t.Fatalf("Status: %v, %v; want one serving namespace and its plugin", st, err)
	}
	id := st.GetPlugins()[0].GetId()
	if st.GetNamespaces()[0].GetPlugins()[0] != id || st.GetPlugins()[0].GetState() != "up" {
		t.Errorf("Status: %v; want namespace static on plugin %s, up", st, id)
	}
	_, err = r.admin.DrainPlugin(ctx, &adminv1.DrainPluginRequest{Id: "nope"})
	wantCode(t, "DrainPlugin of an unknown id", err, codes.NotFound)
	if _, err := r.admin.DrainPlugin(ctx, &adminv1.DrainPluginRequest{Id: id}); err != nil {
		t.Fatalf("DrainPlugin: %v", err)
	}
	_, err = r.kv.Exists(r.data(t, "static"), &keyvaluev1.ExistsRequest{Key: "k"})
	wantCode(t, "Exists on a drained plugin's namespace", err, codes.Unavailable)
	if _, err := r.admin.RestartPlugin(ctx, &adminv1.RestartPluginRequest{Id: id}); err != nil {
		t.Fatalf("RestartPlugin: %v", err)
	}
	_, err = r.kv.Exists(r.data(t, "static"), &keyvaluev1.ExistsRequest{Key: "k"})
	wantCode(t, "Exists after RestartPlugin", err, codes.OK)
	b, _ := os.ReadFile(r.cfg.Admin.AuditLog)
	for _, want := range []string{`"action":"plugin.drain","plugin":"nope"`, `"action":"plugin.drain","plugin":"` + id + `"`, `"action":"plugin.restart","plugin":"` + id + `"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the audit log lacks %s:\n%s", want, b)
		}
	}
}

// TestAdminKeepsAReplacedPluginForItsOpenStream: after an update moves a
// namespace to another plugin, a subscription opened before it stays open
// on the old plugin (which no namespace uses any more) until the client
// ends it; only then is the old plugin stopped.
func TestAdminKeepsAReplacedPluginForItsOpenStream(t *testing.T) {
	r := newAdminRig(t)
	ctx := r.ctx(t, r.adminTk)
	spec := func(instance string) string {
		return "name: live\npatterns: [keyvalue, pubsub]\nplugin: {builtin: gated, instance: " + instance + "}\n"
	}
	if _, err := r.admin.CreateNamespace(ctx, &adminv1.CreateNamespaceRequest{Spec: spec("one")}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	sctx, cancel := context.WithCancel(r.data(t, "live"))
	sub, err := pubsubv1.NewPubSubClient(dial(t, r.p.Addr())).Subscribe(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
		Subscription: &pubsubv1.Subscription{Topic: "t"}}}); err != nil {
		t.Fatal(err)
	}
	if ev, err := sub.Recv(); err != nil || ev.GetSubscribed() == nil {
		t.Fatalf("first event: %v, %v; want Subscribed", ev, err)
	}
	if _, err := r.admin.UpdateNamespace(ctx, &adminv1.UpdateNamespaceRequest{Spec: spec("two"), Revision: 1}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := sub.Recv()
		ended <- err
	}()
	select {
	case err := <-ended:
		t.Fatalf("the subscription opened before the update ended with it: %v", err)
	case <-time.After(300 * time.Millisecond): // a bounded look for an end that must not come
	}
	if n := r.closed.Load(); n != 0 {
		t.Fatalf("the old plugin was stopped (%d) with a subscription open on it", n)
	}
	cancel()
	if err := <-ended; status.Code(err) != codes.Canceled {
		t.Errorf("the subscription after the client cancelled it: %v, want Canceled", err)
	}
	waitFor(t, "the old plugin to be stopped once its subscription ended", func() bool { return r.closed.Load() == 1 })
}

func TestAdminStoreFolderMustExist(t *testing.T) {
	r := newAdminRig(t)
	cfg := r.cfg
	a := *cfg.Admin
	a.Store.File = filepath.Join(t.TempDir(), "missing", "store.json")
	cfg.Admin = &a
	_, err := proxy.New(cfg, r.builtins()...)
	if err == nil || !strings.Contains(err.Error(), "admin.store.file") {
		t.Errorf("New with a store in a folder that does not exist: %v, want an error naming admin.store.file", err)
	}
}
