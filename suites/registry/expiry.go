package registry

import (
	"fmt"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// liveWindow returns a TTL within which calls more calls surely finish on
// this machine: at least floor, and 20 times the calls' worth of the
// slowest of three Enumerates measured now. A loaded machine gets a longer
// window, so a correct registry never fails a spec for being slow.
func (s *session) liveWindow(floor time.Duration, calls int) time.Duration {
	GinkgoHelper()
	var slowest time.Duration
	for range 3 {
		start := time.Now()
		_, err := s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: s.scoped(nil), PageSize: 1})
		Expect(err).NotTo(HaveOccurred(), "Enumerate (measuring the call latency)")
		slowest = max(slowest, time.Since(start))
	}
	ttl := max(floor, 20*time.Duration(calls)*slowest)
	GinkgoWriter.Printf("call latency up to %v: TTL %v for %d calls\n", slowest, ttl, calls)
	return ttl
}

// expectLive asserts an observation that an identity is still live. When it
// failed only after the identity's TTL had ended (by the shared clock), the
// machine was too slow for the spec to judge: a harness error, not the
// registry's failure.
func expectLive(live bool, until time.Time, format string, args ...any) {
	GinkgoHelper()
	if !live && !time.Now().Before(until) {
		fixture.HarnessFail(fmt.Errorf("the call that had to see the identity live ended after its TTL (%s): the machine is too slow for this spec",
			fmt.Sprintf(format, args...)))
	}
	Expect(live).To(BeTrue(), append([]any{format}, args...)...)
}

func describeExpiry(sess func() *session) {
	Context("expiry", basic, Label("expiry"), func() {
		var s *session
		BeforeEach(func() { s = sess() })

		It("treats an expired identity the slot still holds as gone in Enumerate, total_count, Register, a heartbeat and Unregister", func() {
			ns := s.fx.Target.Namespace
			names := []string{"listed", "again", "heartbeat", "unregistered"}
			ttl := s.liveWindow(300*time.Millisecond, len(names))
			var last *registryv1.RegisterResponse
			old := map[string]*registryv1.RegisterResponse{}
			for _, n := range names {
				resp, err := s.register(ns, n, md{"k": S("gone")}, ttl, false)
				Expect(err).NotTo(HaveOccurred(), "Register %q", n)
				old[n], last = resp, resp
			}
			s.MustRegister("stays", md{"k": S("stays")})
			By("waiting until every short registration has expired (the slot keeps the records for ExpiryGrace more)")
			waitUntil(last.GetExpiresAt().AsTime())

			ids, total := s.enumerate(s.rc, s.scoped(eq("k", S("gone"))), 0)
			Expect(s.names(ids)).To(BeEmpty(), "Enumerate lists no expired identity")
			Expect(total).To(BeZero(), "total_count counts no expired identity")
			resp, err := s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: s.scoped(nil), PageSize: 1})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetTotalCount()).To(Equal(int64(1)), "total_count with page_size 1 counts only the live identity")

			_, err = s.register(ns, "again", md{"k": S("new")}, time.Minute, false)
			Expect(err).NotTo(HaveOccurred(), "Register without replace of an expired identity is a new registration, not AlreadyExists")

			before := time.Now()
			hb, err := s.register(ns, "heartbeat", md{"k": S("new")}, time.Minute, true)
			Expect(err).NotTo(HaveOccurred(), "a heartbeat (replace) of an expired identity")
			Expect(hb.GetRegisteredAt().AsTime()).NotTo(BeTemporally("==", old["heartbeat"].GetRegisteredAt().AsTime()),
				"a heartbeat of an expired identity registers it anew: registered_at must not be the expired registration's")
			Expect(hb.GetRegisteredAt().AsTime()).To(BeTemporally(">=", before.Add(-time.Millisecond)), "registered_at of the new registration")

			existed, err := s.rc.Unregister(s.ctx(), &registryv1.UnregisterRequest{Identity: s.id("unregistered")})
			Expect(err).NotTo(HaveOccurred())
			Expect(existed.GetExisted()).To(BeFalse(), "Unregister of an expired identity reports existed=false")

			Expect(s.MustEnumerateNames(eq("k", S("new")))).To(ConsistOf("again", "heartbeat"))
		})

		It("keeps an identity live until its TTL ends: at 75 % of a TTL of at least 2 s, also of a heartbeat's, every operation sees it", func() {
			ns := s.fx.Target.Namespace
			ttl := s.liveWindow(2*time.Second, 8)
			start := time.Now()
			_, err := s.register(ns, "plain", md{"k": S("live")}, ttl, false)
			Expect(err).NotTo(HaveOccurred())
			plainUntil := start.Add(ttl)
			_, err = s.register(ns, "renewed", md{"k": S("live")}, ttl, false)
			Expect(err).NotTo(HaveOccurred())

			// sees checks, at 75 % of name's TTL, that Enumerate lists it,
			// total_count (from a walk of its own: page_size 1) counts the
			// live ones and Register without replace refuses it.
			sees := func(name string, until time.Time, live int) {
				GinkgoHelper()
				got := s.MustEnumerateNames(eq("k", S("live")))
				expectLive(slices.Contains(got, name), until, "Enumerate lists %q before its TTL ends (got %v)", name, got)
				resp, err := s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: s.scoped(eq("k", S("live"))), PageSize: 1})
				Expect(err).NotTo(HaveOccurred())
				expectLive(resp.GetTotalCount() == int64(live), until, "total_count with page_size 1 counts %d live identities, %q among them (got %d)",
					live, name, resp.GetTotalCount())
				_, err = s.register(ns, name, md{"k": S("live")}, ttl, false)
				expectLive(err != nil, until, "Register without replace of %q must answer AlreadyExists before its TTL ends", name)
				Expect(err).To(fixture.HaveCode(codes.AlreadyExists), "Register without replace of a live identity")
			}

			By("renewing one at half its TTL (the heartbeat)")
			waitUntil(start.Add(ttl / 2))
			hbStart := time.Now()
			hb, err := s.register(ns, "renewed", md{"k": S("live")}, ttl, true)
			Expect(err).NotTo(HaveOccurred(), "heartbeat")
			renewedUntil := hbStart.Add(ttl)
			Expect(hb.GetExpiresAt().AsTime()).To(BeTemporally(">=", renewedUntil), "a heartbeat's expires_at is at least its TTL after the call")

			By("reading the plain one at 75 % of its TTL")
			waitUntil(start.Add(ttl * 3 / 4))
			sees("plain", plainUntil, 2)

			By("reading the renewed one at 75 % of the heartbeat's TTL, after its first TTL has ended")
			waitUntil(hbStart.Add(ttl * 3 / 4))
			sees("renewed", renewedUntil, 1)
			resp, err := s.rc.Unregister(s.ctx(), &registryv1.UnregisterRequest{Identity: s.id("renewed")})
			Expect(err).NotTo(HaveOccurred())
			expectLive(resp.GetExisted(), renewedUntil, "Unregister of a live identity reports existed=true")
		})
	})

	Context("expiry", multicast, Label("expiry"), func() {
		var s *session
		BeforeEach(func() { s = sess() })

		It("answers NotFound when opening the inbox of an expired identity the slot still holds, and opens it once registered again", func() {
			ttl := s.liveWindow(300*time.Millisecond, 1)
			short, err := s.register(s.fx.Target.Namespace, "dev", md{}, ttl, false)
			Expect(err).NotTo(HaveOccurred())
			waitUntil(short.GetExpiresAt().AsTime())
			_, err = s.openInbox(s.rc, "dev")
			Expect(err).To(fixture.HaveCode(codes.NotFound), "Receive of an expired identity")
			s.MustRegister("dev", md{})
			in := s.MustReceive("dev")
			resp := s.MustMulticast(nil, "back")
			Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{"dev": delivered}))
			in.WaitCount(1, s.fx.Timeouts.Eventually)
		})
	})
}
