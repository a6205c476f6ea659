package registry

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	hproxy "github.com/prism-suite/prism/harness/proxy"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// specialNames are identities whose characters would collide under a naive
// key or subject encoding.
var specialNames = []string{"a", "a.b", "a.*", "a.>", "a/b", "a b", "a%2Fb", "a%", "a*", "a>", "*", ">", "a.", "a/", "ä", "a\u0308", "設備-1", "A"}

func describeBasic(sess func() *session) {
	Context("basic", basic, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		It("registers an identity with typed metadata and enumerates it with that metadata and its timestamps", func() {
			m := md{"s": S("ünïcødé ✓"), "i": I(-42), "f": F(2.5), "b": B(true), "l": L("x", "y", ""), "empty": S("")}
			before := time.Now()
			resp := s.MustRegister("dev", m)
			Expect(resp.GetRegisteredAt().AsTime()).To(BeTemporally("~", before, s.fx.Timeouts.Call))
			Expect(resp.GetExpiresAt().AsTime().Sub(resp.GetRegisteredAt().AsTime())).To(BeNumerically("~", time.Minute, time.Second))
			ids, total := s.enumerate(s.rc, s.scoped(nil), 0)
			Expect(total).To(Equal(int64(1)))
			Expect(ids).To(HaveLen(1))
			Expect(ids[0].GetIdentity()).To(Equal(s.id("dev")))
			Expect(ids[0].GetRegisteredAt().AsTime()).To(BeTemporally("==", resp.GetRegisteredAt().AsTime()))
			Expect(ids[0].GetExpiresAt().AsTime()).To(BeTemporally("==", resp.GetExpiresAt().AsTime()))
			for k, v := range s.tagged(m) {
				Expect(proto.Equal(ids[0].GetMetadata()[k], v)).To(BeTrue(), "metadata %q: got %v, want %v", k, ids[0].GetMetadata()[k], v)
			}
			Expect(ids[0].GetMetadata()).To(HaveLen(len(m) + 1))
			resp2, err := s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: s.scoped(nil)})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp2.GetIdentities()).To(HaveLen(1))
			Expect(resp2.GetIdentities()[0].GetMetadata()).To(BeEmpty(), "include_metadata=false must leave the metadata out")
		})

		It("answers AlreadyExists for a live identity without replace and keeps the first registration", Label("replace"), func() {
			first := s.MustRegister("dev", md{"v": I(1)})
			_, err := s.register(s.fx.Target.Namespace, "dev", md{"v": I(2)}, time.Minute, false)
			Expect(err).To(fixture.HaveCode(codes.AlreadyExists), "a second Register without replace")
			ids, _ := s.enumerate(s.rc, s.scoped(nil), 0)
			Expect(ids).To(HaveLen(1))
			Expect(proto.Equal(ids[0].GetMetadata()["v"], I(1))).To(BeTrue(), "the refused Register must not change the metadata")
			Expect(ids[0].GetExpiresAt().AsTime()).To(BeTemporally("==", first.GetExpiresAt().AsTime()))
		})

		It("replaces metadata and extends expires_at with replace (the heartbeat), keeping registered_at", Label("replace"), func() {
			first, err := s.register(s.fx.Target.Namespace, "dev", md{"v": I(1), "gone": B(true)}, 10*time.Second, false)
			Expect(err).NotTo(HaveOccurred())
			second, err := s.register(s.fx.Target.Namespace, "dev", md{"v": I(2)}, time.Minute, true)
			Expect(err).NotTo(HaveOccurred(), "Register with replace")
			Expect(second.GetRegisteredAt().AsTime()).To(BeTemporally("==", first.GetRegisteredAt().AsTime()), "a heartbeat keeps registered_at")
			Expect(second.GetExpiresAt().AsTime()).To(BeTemporally(">", first.GetExpiresAt().AsTime().Add(40*time.Second)), "a heartbeat extends expires_at")
			ids, _ := s.enumerate(s.rc, s.scoped(nil), 0)
			Expect(ids).To(HaveLen(1))
			Expect(proto.Equal(ids[0].GetMetadata()["v"], I(2))).To(BeTrue(), "replace sets the new metadata")
			Expect(ids[0].GetMetadata()).NotTo(HaveKey("gone"), "replace drops fields the new metadata lacks")
			_, err = s.register(s.fx.Target.Namespace, "fresh", md{}, time.Minute, true)
			Expect(err).NotTo(HaveOccurred(), "replace of an identity that does not exist registers it")
		})

		It("unregisters idempotently and reports whether the identity was registered", func() {
			s.MustRegister("dev", md{})
			s.MustRegister("other", md{})
			Expect(s.MustUnregister("dev")).To(BeTrue(), "existed")
			Expect(s.MustUnregister("dev")).To(BeFalse(), "a second Unregister succeeds and reports false")
			Expect(s.MustUnregister("never")).To(BeFalse())
			Expect(s.MustEnumerateNames(nil)).To(Equal([]string{"other"}))
			s.MustRegister("dev", md{})
		})

		It("answers InvalidArgument naming the field for an invalid identity, TTL or metadata", func() {
			ns := s.fx.Target.Namespace
			cases := []struct {
				req   *registryv1.RegisterRequest
				field string
			}{
				{&registryv1.RegisterRequest{Identity: "", Ttl: durationpb.New(time.Minute)}, "identity"},
				{&registryv1.RegisterRequest{Identity: s.id("a\x00b"), Ttl: durationpb.New(time.Minute)}, "identity"},
				{&registryv1.RegisterRequest{Identity: s.id("no-ttl")}, "ttl"},
				{&registryv1.RegisterRequest{Identity: s.id("neg-ttl"), Ttl: durationpb.New(-time.Second)}, "ttl"},
				{&registryv1.RegisterRequest{Identity: s.id("no-kind"), Ttl: durationpb.New(time.Minute),
					Metadata: map[string]*registryv1.Value{"empty": {}}}, "metadata.empty"},
			}
			for _, c := range cases {
				_, err := s.client(ns).Register(s.ctx(), c.req)
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, c.field), "Register %v", c.req)
			}
			_, err := s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: s.scoped(nil), Cursor: "not-a-cursor"})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "cursor"))
			_, err = s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: s.scoped(nil), PageSize: -1})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "page_size"))
		})

		It("enforces the namespace's schema with InvalidArgument naming the field", Label("schema"), func() {
			ns := s.fx.Registry.SchemaNamespace
			cases := []struct {
				m     md
				field string
			}{
				{md{"floor": I(1)}, "metadata.type"},                                       // required
				{md{"type": S("door")}, "metadata.type"},                                   // enum
				{md{"type": I(1)}, "metadata.type"},                                        // type
				{md{"type": S("sensor"), "floor": S("1")}, "metadata.floor"},               // type: string for int
				{md{"type": S("sensor"), "floor": F(1.0)}, "metadata.floor"},               // type: float for int, even 1.0
				{md{"type": S("sensor"), "ratio": S("0.5")}, "metadata.ratio"},             // number
				{md{"type": S("sensor"), "name": S("seventeen bytes!!")}, "metadata.name"}, // max_length
				{md{"type": S("sensor"), "tags": L("a", "b", "c", "d")}, "metadata.tags"},  // max_length of a list
				{md{"type": S("sensor"), "active": S("true")}, "metadata.active"},          // bool
				{md{"type": S("sensor"), "zone": S("a")}, "metadata.zone"},                 // closed schema
			}
			for i, c := range cases {
				_, err := s.register(ns, fmt.Sprintf("bad-%d", i), c.m, time.Minute, false)
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, c.field), "Register with metadata %v", c.m)
			}
			_, err := s.register(ns, "good", md{"type": S("sensor"), "floor": I(3), "ratio": I(1), "name": S("sixteen bytes!!!"),
				"tags": L("a", "b", "c"), "active": B(false)}, time.Minute, false)
			Expect(err).NotTo(HaveOccurred(), "metadata that satisfies the schema")
			_, err = s.register(ns, "float-ratio", md{"type": S("gateway"), "ratio": F(0.5)}, time.Minute, false)
			Expect(err).NotTo(HaveOccurred(), "a number field takes a float")
		})

		It("answers ResourceExhausted at the quota and never counts expired identities", Label("quota", "expiry"), func() {
			ns := s.fx.Registry.QuotaNamespace
			ttl := s.liveWindow(time.Second, Quota+2)
			var first, last *registryv1.RegisterResponse
			for i := range Quota {
				resp, err := s.register(ns, fmt.Sprintf("q%d", i), md{}, ttl, false)
				Expect(err).NotTo(HaveOccurred(), "Register %d of a quota of %d", i+1, Quota)
				if first == nil {
					first = resp
				}
				last = resp
			}
			_, err := s.register(ns, "over", md{}, time.Minute, false)
			expectLive(err != nil, first.GetExpiresAt().AsTime(), "Register beyond the quota of %d must be refused while the %d are live", Quota, Quota)
			Expect(err).To(fixture.HaveCode(codes.ResourceExhausted), "Register beyond the quota of %d", Quota)
			hb, err := s.register(ns, "q0", md{}, ttl, true)
			Expect(err).NotTo(HaveOccurred(), "a heartbeat of an identity already counted needs no room")
			By("waiting until the three registrations have expired")
			waitUntil(last.GetExpiresAt().AsTime())
			waitUntil(hb.GetExpiresAt().AsTime()) // q0's heartbeat
			ids, _ := s.enumerate(s.client(ns), s.scoped(nil), 0)
			Expect(ids).To(BeEmpty(), "expired identities are not enumerated")
			_, err = s.register(ns, "over", md{}, time.Minute, false)
			Expect(err).NotTo(HaveOccurred(), "expired identities must not count against the quota")
		})

		It("never enumerates an identity once its TTL has passed, and registers it again at once", Label("expiry"), func() {
			ttl := s.liveWindow(700*time.Millisecond, 3)
			short, err := s.register(s.fx.Target.Namespace, "short", md{"k": S("v")}, ttl, false)
			Expect(err).NotTo(HaveOccurred())
			s.MustRegister("long", md{"k": S("v")})
			got := s.MustEnumerateNames(nil)
			expectLive(slices.Contains(got, "short"), short.GetExpiresAt().AsTime(), "Enumerate lists the short registration before its TTL ends (got %v)", got)
			Expect(got).To(ConsistOf("short", "long"))
			waitUntil(short.GetExpiresAt().AsTime())
			ids, total := s.enumerate(s.rc, s.scoped(eq("k", S("v"))), 0)
			Expect(s.names(ids)).To(Equal([]string{"long"}), "an expired identity is never enumerated")
			Expect(total).To(Equal(int64(1)), "total_count leaves expired identities out")
			_, err = s.register(s.fx.Target.Namespace, "short", md{"k": S("again")}, time.Minute, false)
			Expect(err).NotTo(HaveOccurred(), "an expired identity can be registered again at once, without replace")
			Expect(s.MustEnumerateNames(eq("k", S("again")))).To(Equal([]string{"short"}))
		})

		It("keeps identities whose names contain '.', '*', '>', '/', spaces, '%' or Unicode apart", Label("isolation"), func() {
			for i, n := range specialNames {
				s.MustRegister(n, md{"n": I(int64(i))})
			}
			ids, total := s.enumerate(s.rc, s.scoped(nil), 5)
			Expect(total).To(Equal(int64(len(specialNames))))
			got := map[string]int64{}
			for _, id := range ids {
				got[s.name(id.GetIdentity())] = id.GetMetadata()["n"].GetIntValue()
			}
			Expect(got).To(HaveLen(len(specialNames)), "every identity enumerated once: %v", s.names(ids))
			for i, n := range specialNames {
				Expect(got).To(HaveKeyWithValue(n, int64(i)), "identity %q keeps its own metadata", n)
			}
			Expect(s.MustUnregister("a.*")).To(BeTrue())
			Expect(s.MustUnregister("a/")).To(BeTrue())
			rest := s.MustEnumerateNames(nil)
			Expect(rest).To(HaveLen(len(specialNames) - 2))
			Expect(rest).NotTo(ContainElements("a.*", "a/"))
			Expect(rest).To(ContainElements("a", "a.b", "a.>", "a/b", "a*"))
		})

		It("returns each of 5 000 identities exactly once across pages while others come and go", Label("paging"), func() {
			const n = 5000
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("id-%05d", i)
			}
			s.MustRegisterMany(names, func(i int) md { return md{"kind": S("stable"), "i": I(int64(i))} })
			stable := eq("kind", S("stable"))

			By("walking the pages while identities are registered and unregistered")
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var churnErr error
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				for i := 0; i < 2000 && ctx.Err() == nil; i++ {
					name := fmt.Sprintf("churn-%03d", i%40)
					if _, err := s.register(s.fx.Target.Namespace, name, md{"kind": S("stable"), "churn": B(true)}, time.Minute, true); err != nil {
						churnErr = err
						return
					}
					if _, err := s.rc.Unregister(s.ctx(), &registryv1.UnregisterRequest{Identity: s.id(fmt.Sprintf("churn-%03d", (i+20)%40))}); err != nil {
						churnErr = err
						return
					}
				}
			}()
			ids, total := s.enumerate(s.rc, s.scoped(stable), 450)
			cancel()
			wg.Wait()
			Expect(churnErr).NotTo(HaveOccurred(), "registers and unregisters during the walk")
			Expect(total).To(BeNumerically(">=", n), "total_count of the first page")
			seen := map[string]int{}
			for _, id := range ids {
				seen[s.name(id.GetIdentity())]++
			}
			var missing, dup []string
			for _, name := range names {
				switch seen[name] {
				case 0:
					missing = append(missing, name)
				case 1:
				default:
					dup = append(dup, fmt.Sprintf("%s (×%d)", name, seen[name]))
				}
			}
			for name, k := range seen {
				if k > 1 && len(name) > 6 && name[:6] == "churn-" {
					dup = append(dup, fmt.Sprintf("%s (×%d)", name, k))
				}
			}
			sort.Strings(missing)
			Expect(dup).To(BeEmpty(), "identities returned more than once")
			Expect(missing).To(BeEmpty(), "%d of %d identities present for the whole walk were never returned", len(missing), n)
		})

		It("routes like the proxy: NotFound for an unknown namespace, InvalidArgument without one", func() {
			_, err := s.client("prism-no-such-namespace").Enumerate(s.ctx(), &registryv1.EnumerateRequest{})
			Expect(err).To(fixture.HaveCode(codes.NotFound))
			_, err = registryv1.NewRegistryClient(s.fx.Target.Conn).Enumerate(s.ctx(), &registryv1.EnumerateRequest{})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "x-prism-namespace"))
			_, err = s.fx.Target.KeyValue().Get(s.ctx(), &keyvaluev1.GetRequest{Key: s.id("k")})
			Expect(err).To(fixture.HaveCode(codes.Unimplemented), "a KeyValue call on a registry namespace")
		})

		It("keeps its state in the registry slot: a second proxy sees it and a proxy restart loses nothing", Label("restart"), func() {
			if !s.fx.Registry.SharedState {
				Skip(fmt.Sprintf("the registry slot (%s) keeps its data in a plugin process the proxy owns, so no other proxy can share it and a restart starts empty",
					s.fx.Registry.RegistrySlot))
			}
			if s.fx.LaunchProxy == nil {
				Skip("the fixture cannot launch another proxy")
			}
			ns := s.fx.Target.Namespace
			// launch starts another proxy on the same slots. Starting the
			// second one sets the scene (harness); starting the third is the
			// restart under test, and a proxy that does not come back fails.
			launch := func(restart bool) *hproxy.Proxy {
				GinkgoHelper()
				ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Handshake+s.fx.Timeouts.Eventually)
				defer cancel()
				px, err := s.fx.LaunchProxy(ctx)
				if px != nil {
					fixture.DeferExpect("stop a proxy the spec started", px.Stop)
				}
				if restart {
					Expect(err).NotTo(HaveOccurred(), "start a proxy again on the same slots (the restart)")
				} else {
					fixture.Harness(err, "start a second proxy on the same slots")
				}
				return px
			}
			By("registering through a second proxy")
			second := launch(false)
			for _, n := range []string{"r1", "r/2", "r 3"} {
				s.track(ns, s.id(n))
				_, err := second.Target(ns).Registry().Register(s.ctx(), &registryv1.RegisterRequest{Identity: s.id(n),
					Metadata: s.tagged(md{"via": S("second")}), Ttl: durationpb.New(time.Minute)})
				Expect(err).NotTo(HaveOccurred())
			}
			Expect(s.MustEnumerateNames(eq("via", S("second")))).To(ConsistOf("r1", "r/2", "r 3"), "the fixture's proxy sees what the second registered")

			By("restarting: stopping the second proxy and starting a third on the same slots")
			Expect(second.Stop(context.Background())).To(Succeed(), "stop the second proxy")
			third := launch(true).Target(ns).Registry()
			ids, _ := s.enumerate(third, s.scoped(eq("via", S("second"))), 2)
			Expect(s.names(ids)).To(ConsistOf("r1", "r/2", "r 3"), "a freshly started proxy sees the registry")
			_, err := third.Unregister(s.ctx(), &registryv1.UnregisterRequest{Identity: s.id("r/2")})
			Expect(err).NotTo(HaveOccurred())
			Expect(s.MustEnumerateNames(eq("via", S("second")))).To(ConsistOf("r1", "r 3"))
		})
	})
}

// waitUntil returns once the local clock has passed t by a little: how a
// spec waits for a TTL to run out (the proxy runs on this machine, so it
// shares the clock).
func waitUntil(t time.Time) {
	if d := time.Until(t.Add(20 * time.Millisecond)); d > 0 {
		time.Sleep(d)
	}
}
