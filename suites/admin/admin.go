// Package admin holds the Ginkgo specs that certify the reference proxy's
// admin API (prism.admin.v1), capability admin.namespaces: who may call it,
// that namespace changes apply live on one proxy and reach a second proxy
// sharing the admin store, that calls in flight survive an update, that
// invalid changes are refused naming the field and change nothing, that
// concurrent updates of one revision lose none, that a restarted proxy
// serves the stored namespaces, and that the audit log has every change.
//
// The specs observe the proxy only through its admin and data APIs and its
// audit log file. Namespaces they create use Fixture.Admin.Builtin
// (memstore, linked into the proxy), told apart by instance labels.
//
// [Register] only registers specs; it never calls RunSpecs. The fixture is
// read when each spec runs: without Fixture.Admin every spec is skipped with
// that reason.
package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	adminv1 "github.com/prism-suite/prism/proto/prism/admin/v1"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

var adminLabel = Label(string(capability.AdminNamespaces))

// Register adds the admin specs under "Admin", labelled "admin" (so
// --label-filter admin selects them all).
func Register(p fixture.Provider) bool {
	return Describe("Admin", Label("admin"), adminLabel, func() {
		var s *session
		BeforeEach(func() {
			fx := p()
			if fx.Admin == nil {
				Skip("the run does not certify the admin API: prism-accept --admin starts a test OIDC issuer and two proxies with the admin API on")
			}
			fixture.Gate(fx)
			s = newSession(fx)
		})
		// An AfterEach, not DeferCleanup: it runs before an enclosing
		// Ordered container's AfterAll stops the proxies.
		AfterEach(func() {
			if s != nil {
				s.cleanup()
				s = nil
			}
		})
		get := func() *session { return s }
		describeAccess(get)
		describeChanges(get)
		describeRefusals(get)
		describePersistence(get)
	})
}

// session is one spec's view of the fixture: its namespace names, tokens
// and clients.
type session struct {
	fx      *fixture.Fixture
	a       *fixture.Admin
	id      string // makes the spec's namespace names unique
	names   []string
	created []string
}

func newSession(fx *fixture.Fixture) *session {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &session{fx: fx, a: fx.Admin, id: hex.EncodeToString(b[:])}
}

// name returns the spec's namespace name number i.
func (s *session) name(i int) string {
	n := fmt.Sprintf("adm-%s-%d", s.id, i)
	for len(s.names) <= i {
		s.names = append(s.names, fmt.Sprintf("adm-%s-%d", s.id, len(s.names)))
	}
	return n
}

// token mints a token for subject sub with read and write on the spec's
// namespaces, and the admin role when admin is true.
func (s *session) token(sub string, admin bool) string {
	GinkgoHelper()
	for i := range 4 {
		s.name(i)
	}
	var scope []string
	for _, n := range s.names {
		scope = append(scope, "prism:"+n+":read", "prism:"+n+":write")
	}
	c := s.a.Issuer.Claims(sub, scope...)
	if admin {
		c[s.a.RoleClaim] = []string{"prism-users", s.a.RoleValue}
	} else {
		c[s.a.RoleClaim] = []string{"prism-users", s.a.RoleValue + "-not"}
	}
	t, err := s.a.Issuer.Mint(c)
	Expect(err).NotTo(HaveOccurred(), "mint a token")
	return t
}

// adminSubject is the sub of the specs' admin tokens.
const adminSubject = "prism-admin-suite"

func (s *session) ctx(token string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Eventually)
	DeferCleanup(cancel)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return ctx
}

// admin is an admin context for an admin call.
func (s *session) admin() context.Context { return s.ctx(s.token(adminSubject, true)) }

func client(px *proxy.Proxy) adminv1.AdminClient { return adminv1.NewAdminClient(px.AdminConn) }

// data is a context for a data call on namespace ns.
func (s *session) data(ns string) context.Context {
	ctx := s.ctx(s.token(adminSubject, false))
	return metadata.AppendToOutgoingContext(ctx, target.NamespaceKey, ns)
}

// spec is a namespace spec on the fixture's builtin.
func (s *session) spec(name, instance string, patterns ...string) string {
	if len(patterns) == 0 {
		patterns = []string{"keyvalue"}
	}
	return fmt.Sprintf("name: %s\npatterns: [%s]\nplugin: {builtin: %s, instance: %s}\n", name, strings.Join(patterns, ", "), s.a.Builtin, instance)
}

// mustCreate creates a namespace through px and tracks it for cleanup.
func (s *session) mustCreate(px *proxy.Proxy, spec string) *adminv1.Namespace {
	GinkgoHelper()
	r, err := client(px).CreateNamespace(s.admin(), &adminv1.CreateNamespaceRequest{Spec: spec})
	Expect(err).NotTo(HaveOccurred(), "CreateNamespace")
	s.created = append(s.created, r.GetNamespace().GetName())
	return r.GetNamespace()
}

// cleanup deletes what the spec created, in reverse order.
func (s *session) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Eventually)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.token(adminSubject, true))
	for i := len(s.created) - 1; i >= 0; i-- {
		_, err := client(s.a.Proxy).DeleteNamespace(ctx, &adminv1.DeleteNamespaceRequest{Name: s.created[i]})
		if status.Code(err) != codes.NotFound {
			Expect(err).NotTo(HaveOccurred(), "clean up namespace %s", s.created[i])
		}
	}
}

func kv(px *proxy.Proxy) keyvaluev1.KeyValueClient { return keyvaluev1.NewKeyValueClient(px.Conn) }

// serves reports whether px routes namespace ns: Exists answers NotFound
// only for a namespace the proxy does not serve.
func (s *session) serves(px *proxy.Proxy, ns string) error {
	_, err := kv(px).Exists(s.data(ns), &keyvaluev1.ExistsRequest{Key: "probe"})
	return err
}

func (s *session) within() time.Duration { return s.fx.Timeouts.Eventually }

func describeAccess(s func() *session) {
	Describe("Access", func() {
		It("refuses admin calls without a token or with an invalid one with Unauthenticated", func() {
			a := client(s().a.Proxy)
			_, err := a.ListNamespaces(s().ctx(""), &adminv1.ListNamespacesRequest{})
			Expect(err).To(fixture.HaveCode(codes.Unauthenticated), "ListNamespaces without a token")
			_, err = a.CreateNamespace(s().ctx(""), &adminv1.CreateNamespaceRequest{Spec: s().spec(s().name(0), "a")})
			Expect(err).To(fixture.HaveCode(codes.Unauthenticated), "CreateNamespace without a token")
			_, err = a.CreateNamespace(s().ctx(s().token(adminSubject, true)+"x"), &adminv1.CreateNamespaceRequest{Spec: s().spec(s().name(0), "a")})
			Expect(err).To(fixture.HaveCode(codes.Unauthenticated), "CreateNamespace with a tampered admin token")
			Expect(s().serves(s().a.Proxy, s().name(0))).To(fixture.HaveCode(codes.NotFound), "the refused create applied nothing")
		})

		It("refuses a valid token without the admin role with PermissionDenied and applies nothing", func() {
			a := client(s().a.Proxy)
			user := s().ctx(s().token("prism-admin-suite-user", false))
			_, err := a.CreateNamespace(user, &adminv1.CreateNamespaceRequest{Spec: s().spec(s().name(0), "a")})
			Expect(err).To(fixture.HaveCode(codes.PermissionDenied), "CreateNamespace without the admin role")
			_, err = a.ListNamespaces(user, &adminv1.ListNamespacesRequest{})
			Expect(err).To(fixture.HaveCode(codes.PermissionDenied), "ListNamespaces without the admin role")
			Expect(s().serves(s().a.Proxy, s().name(0))).To(fixture.HaveCode(codes.NotFound), "the refused create applied nothing")
		})
	})
}

func describeChanges(s func() *session) {
	Describe("Changes", func() {
		It("serves a created namespace at once, and through a second proxy sharing the store", func() {
			ns := s().name(0)
			got := s().mustCreate(s().a.Proxy, s().spec(ns, "one"))
			Expect(got.GetRevision()).To(Equal(int64(1)), "revision of a created namespace")
			_, err := kv(s().a.Proxy).Set(s().data(ns), &keyvaluev1.SetRequest{Key: "k", Value: []byte("v")})
			Expect(err).NotTo(HaveOccurred(), "Set right after CreateNamespace returned")
			r, err := kv(s().a.Proxy).Get(s().data(ns), &keyvaluev1.GetRequest{Key: "k"})
			Expect(err).NotTo(HaveOccurred(), "Get")
			Expect(string(r.GetValue())).To(Equal("v"))
			Eventually(func() error {
				_, err := kv(s().a.Second).Set(s().data(ns), &keyvaluev1.SetRequest{Key: "k", Value: []byte("w")})
				return err
			}).WithTimeout(s().within()).Should(Succeed(), "the second proxy serves the namespace created through the first")
			l, err := client(s().a.Second).ListNamespaces(s().admin(), &adminv1.ListNamespacesRequest{})
			Expect(err).NotTo(HaveOccurred())
			Expect(names(l.GetNamespaces())).To(ContainElement(ns), "the second proxy lists it")
		})

		It("sends new calls to an updated config while a subscription in flight finishes on the old one", func() {
			keep, ns := s().name(0), s().name(1)
			// keep and ns share one plugin instance until ns is updated to another.
			s().mustCreate(s().a.Proxy, s().spec(keep, "one", "keyvalue", "pubsub"))
			s().mustCreate(s().a.Proxy, s().spec(ns, "one", "keyvalue", "pubsub"))
			_, err := kv(s().a.Proxy).Set(s().data(ns), &keyvaluev1.SetRequest{Key: "k", Value: []byte("one")})
			Expect(err).NotTo(HaveOccurred(), "Set before the update")
			sub := s().subscribe(ns, "t")

			_, err = client(s().a.Proxy).UpdateNamespace(s().admin(), &adminv1.UpdateNamespaceRequest{
				Spec: s().spec(ns, "two", "keyvalue", "pubsub"), Revision: 1})
			Expect(err).NotTo(HaveOccurred(), "UpdateNamespace to instance two")

			_, err = kv(s().a.Proxy).Get(s().data(ns), &keyvaluev1.GetRequest{Key: "k"})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "a Get after the update reaches instance two, which never had the key")
			ps := pubsubv1.NewPubSubClient(s().a.Proxy.Conn)
			_, err = ps.Publish(s().data(ns), &pubsubv1.PublishRequest{Topic: "t", Payload: []byte("new-config")})
			Expect(err).NotTo(HaveOccurred(), "Publish on the updated namespace")
			_, err = ps.Publish(s().data(keep), &pubsubv1.PublishRequest{Topic: "t", Payload: []byte("old-instance")})
			Expect(err).NotTo(HaveOccurred(), "Publish on the namespace still on instance one")
			ev, err := sub.Recv()
			Expect(err).NotTo(HaveOccurred(), "the subscription opened before the update was cut by it")
			Expect(string(ev.GetMessage().GetPayload())).To(Equal("old-instance"),
				"the subscription in flight still reads instance one (and not what the updated namespace publishes)")
			Expect(sub.CloseSend()).To(Succeed())
		})

		It("answers NotFound for a deleted namespace, on both proxies", func() {
			ns := s().name(0)
			s().mustCreate(s().a.Proxy, s().spec(ns, "one"))
			Eventually(func() error { return s().serves(s().a.Second, ns) }).WithTimeout(s().within()).Should(Succeed(), "the second proxy serves it")
			_, err := client(s().a.Second).DeleteNamespace(s().admin(), &adminv1.DeleteNamespaceRequest{Name: ns, Revision: 1})
			Expect(err).NotTo(HaveOccurred(), "DeleteNamespace through the second proxy")
			Expect(s().serves(s().a.Second, ns)).To(fixture.HaveCode(codes.NotFound), "the deleting proxy at once")
			Eventually(func() error { return s().serves(s().a.Proxy, ns) }).WithTimeout(s().within()).Should(fixture.HaveCode(codes.NotFound),
				"the other proxy sharing the store")
			_, err = client(s().a.Proxy).GetNamespace(s().admin(), &adminv1.GetNamespaceRequest{Name: ns})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "GetNamespace of a deleted namespace")
		})

		It("lets exactly one of concurrent updates of the same revision win; the others are Aborted", func() {
			ns := s().name(0)
			s().mustCreate(s().a.Proxy, s().spec(ns, "one"))
			Eventually(func() error { return s().serves(s().a.Second, ns) }).WithTimeout(s().within()).Should(Succeed())
			const n = 8
			got := make([]codes.Code, n)
			var wg sync.WaitGroup
			ctx := s().admin()
			for i := range n {
				px := s().a.Proxy
				if i%2 == 1 {
					px = s().a.Second
				}
				wg.Go(func() {
					defer GinkgoRecover()
					_, err := client(px).UpdateNamespace(ctx, &adminv1.UpdateNamespaceRequest{Spec: s().spec(ns, fmt.Sprintf("u%d", i)), Revision: 1})
					got[i] = status.Code(err)
				})
			}
			wg.Wait()
			won, aborted := 0, 0
			for _, c := range got {
				switch c {
				case codes.OK:
					won++
				case codes.Aborted:
					aborted++
				}
			}
			Expect([]int{won, aborted}).To(Equal([]int{1, n - 1}), "codes of %d concurrent updates of revision 1: %v", n, got)
			g, err := client(s().a.Second).GetNamespace(s().admin(), &adminv1.GetNamespaceRequest{Name: ns})
			Expect(err).NotTo(HaveOccurred())
			Expect(g.GetNamespace().GetRevision()).To(Equal(int64(2)), "the revision after one update")
		})
	})
}

// subscribe opens a subscription on topic through the proxy and waits
// until it is live.
func (s *session) subscribe(ns, topic string) pubsubv1.PubSub_SubscribeClient {
	GinkgoHelper()
	sub, err := pubsubv1.NewPubSubClient(s.a.Proxy.Conn).Subscribe(s.data(ns))
	Expect(err).NotTo(HaveOccurred(), "Subscribe")
	Expect(sub.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
		Subscription: &pubsubv1.Subscription{Topic: topic}}})).To(Succeed())
	ev, err := sub.Recv()
	Expect(err).NotTo(HaveOccurred(), "the subscription's first event")
	Expect(ev.GetSubscribed()).NotTo(BeNil(), "the first event is Subscribed")
	return sub
}

func names(nss []*adminv1.Namespace) []string {
	var out []string
	for _, n := range nss {
		out = append(out, n.GetName())
	}
	return out
}

func describeRefusals(s func() *session) {
	Describe("Bad input", func() {
		It("refuses invalid namespaces with InvalidArgument naming the field, and applies nothing", func() {
			ns := s().name(0)
			a := client(s().a.Proxy)
			for _, tc := range []struct{ what, spec, field string }{
				{"a plugin binary that does not exist", fmt.Sprintf("name: %s\npattern: keyvalue\nplugin: {binary: /nonexistent/prism-plugin}\n", ns), "plugin.binary"},
				{"a name that is no name", "name: 'not a name!'\npattern: keyvalue\nplugin: {builtin: memstore}\n", ".name"},
				{"an unknown field", fmt.Sprintf("name: %s\npattern: keyvalue\nplugin: {builtin: memstore, binry: x}\n", ns), "binry"},
				{"an unknown pattern", fmt.Sprintf("name: %s\npattern: keyvalu\nplugin: {builtin: memstore}\n", ns), ".pattern"},
				{"no plugin", fmt.Sprintf("name: %s\npattern: keyvalue\n", ns), ".plugin"},
				{"a builtin not linked into the proxy", fmt.Sprintf("name: %s\npattern: keyvalue\nplugin: {builtin: no-such-driver}\n", ns), "plugin.builtin"},
				{"an inline credential", fmt.Sprintf("name: %s\npattern: keyvalue\nplugin: {builtin: memstore, credentials: {password: pw}}\n", ns), "credentials.password"},
				{"malformed YAML", "name: [" + ns + "\n", "namespace"},
				{"an empty spec", "", "namespace"},
			} {
				_, err := a.CreateNamespace(s().admin(), &adminv1.CreateNamespaceRequest{Spec: tc.spec})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, tc.field), "CreateNamespace with %s", tc.what)
			}
			Expect(s().serves(s().a.Proxy, ns)).To(fixture.HaveCode(codes.NotFound), "no refused create applied anything")

			s().mustCreate(s().a.Proxy, s().spec(ns, "one"))
			_, err := a.UpdateNamespace(s().admin(), &adminv1.UpdateNamespaceRequest{
				Spec: fmt.Sprintf("name: %s\npattern: keyvalue\nplugin: {binary: /nonexistent/prism-plugin}\n", ns), Revision: 1})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "plugin.binary"), "UpdateNamespace to a binary that does not exist")
			g, err := a.GetNamespace(s().admin(), &adminv1.GetNamespaceRequest{Name: ns})
			Expect(err).NotTo(HaveOccurred())
			Expect(g.GetNamespace().GetRevision()).To(Equal(int64(1)), "the refused update changed the revision")
			Expect(s().serves(s().a.Proxy, ns)).To(Succeed(), "the namespace still serves its old config")

			_, err = a.CreateNamespace(s().admin(), &adminv1.CreateNamespaceRequest{Spec: s().spec(ns, "two")})
			Expect(err).To(fixture.HaveCode(codes.AlreadyExists), "CreateNamespace of an existing name")
			_, err = a.UpdateNamespace(s().admin(), &adminv1.UpdateNamespaceRequest{Spec: s().spec(s().name(1), "two"), Revision: 1})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "UpdateNamespace of a namespace that does not exist")
			_, err = a.DeleteNamespace(s().admin(), &adminv1.DeleteNamespaceRequest{Name: "../" + ns})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "name"), "DeleteNamespace of a name that is no name")
			_, err = a.DrainPlugin(s().admin(), &adminv1.DrainPluginRequest{Id: "no-such-plugin"})
			Expect(err).To(fixture.HaveCodeNaming(codes.NotFound, "id"), "DrainPlugin of an unknown plugin")
		})
	})
}

func describePersistence(s func() *session) {
	Describe("Persistence and audit", func() {
		It("serves the stored namespaces after a proxy restart", func() {
			ns := s().name(0)
			s().mustCreate(s().a.Proxy, s().spec(ns, "one"))
			ctx, cancel := context.WithTimeout(context.Background(), s().within())
			defer cancel()
			o := s().a.Second.Options()
			o.Dir = "" // a fresh run folder: only the store file is shared
			px, err := proxy.Start(ctx, o)
			defer func() {
				sctx, scancel := context.WithTimeout(context.Background(), s().within())
				defer scancel()
				Expect(px.Stop(sctx)).To(Succeed(), "stop the third proxy")
			}()
			if err != nil {
				fixture.HarnessFail(fmt.Errorf("start a third proxy on the admin store: %w", err))
			}
			Expect(s().serves(px, ns)).To(Succeed(), "a proxy started on the store serves its namespaces")
		})

		It("writes each change, and each refused one, to the audit log with its subject", func() {
			ns := s().name(0)
			s().mustCreate(s().a.Proxy, s().spec(ns, "one"))
			a := client(s().a.Proxy)
			_, err := a.UpdateNamespace(s().admin(), &adminv1.UpdateNamespaceRequest{Spec: s().spec(ns, "two"), Revision: 1})
			Expect(err).NotTo(HaveOccurred(), "UpdateNamespace")
			_, err = a.UpdateNamespace(s().admin(), &adminv1.UpdateNamespaceRequest{Spec: s().spec(ns, "three"), Revision: 1})
			Expect(err).To(fixture.HaveCode(codes.Aborted), "UpdateNamespace of a stale revision")
			_, err = a.DeleteNamespace(s().admin(), &adminv1.DeleteNamespaceRequest{Name: ns})
			Expect(err).NotTo(HaveOccurred(), "DeleteNamespace")
			want := []string{
				adminSubject + " namespace.create OK after",
				adminSubject + " namespace.update OK before after",
				adminSubject + " namespace.update Aborted after",
				adminSubject + " namespace.delete OK before",
			}
			Expect(auditOf(s().a.AuditLog, ns)).To(Equal(want),
				"the audit log's lines for namespace %s (subject, action, outcome, whether it has before and after)", ns)
		})
	})
}

// auditOf reads the audit log's lines for namespace ns as "subject action
// outcome [before] [after]", with outcome ok written OK.
func auditOf(path, ns string) []string {
	GinkgoHelper()
	b, err := os.ReadFile(path)
	if err != nil {
		fixture.HarnessFail(fmt.Errorf("read the audit log: %w", err))
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e struct {
			Subject, Action, Namespace, Outcome string
			Before, After                       any
		}
		Expect(json.Unmarshal(sc.Bytes(), &e)).To(Succeed(), "an audit line is JSON: %s", sc.Text())
		if e.Namespace != ns {
			continue
		}
		if e.Outcome == "ok" {
			e.Outcome = "OK"
		}
		line := e.Subject + " " + e.Action + " " + e.Outcome
		if e.Before != nil {
			line += " before"
		}
		if e.After != nil {
			line += " after"
		}
		out = append(out, line)
	}
	return out
}
