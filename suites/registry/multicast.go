package registry

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/proto/capability"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

const (
	delivered = registryv1.TargetStatus_STATUS_DELIVERED
	failed    = registryv1.TargetStatus_STATUS_FAILED
	timedOut  = registryv1.TargetStatus_STATUS_TIMEOUT
)

func describeMulticast(sess func() *session) {
	Context("multicast", multicast, Label("delivery"), func() {
		var s *session
		BeforeEach(func() { s = sess() })

		It("delivers the RFC-018 multicast to {type: sensor, floor: 1}: 1 target, 1 delivered, received by sensor-1 only", func() {
			s.MustRegister("sensor-1", md{"type": S("sensor"), "floor": I(1)})
			s.MustRegister("sensor-2", md{"type": S("sensor"), "floor": I(2)})
			s.MustRegister("actuator-1", md{"type": S("actuator"), "floor": I(1)})
			in := s.MustReceiveMany([]string{"sensor-1", "sensor-2", "actuator-1"})
			resp := s.MustMulticast(and(eq("type", S("sensor")), eq("floor", I(1))), "calibrate")
			Expect(resp.GetTargetCount()).To(Equal(int64(1)), "targets")
			Expect(resp.GetDeliveredCount()).To(Equal(int64(1)), "delivered")
			Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{"sensor-1": delivered}))
			in["sensor-1"].WaitCount(1, s.fx.Timeouts.Eventually)
			m := in["sensor-1"].Messages()[0]
			Expect(string(m.GetPayload())).To(Equal("calibrate"))
			Expect(m.GetMulticastId()).To(Equal(resp.GetMulticastId()))
			Expect(m.GetMessageId()).NotTo(BeEmpty())
			Expect(m.GetSentAt().AsTime()).To(BeTemporally("~", time.Now(), 5*time.Second))

			By("sending a second multicast to all three, which arrives after anything the first sent")
			all := s.MustMulticast(nil, "barrier")
			Expect(all.GetDeliveredCount()).To(Equal(int64(3)))
			for _, n := range []string{"sensor-1", "sensor-2", "actuator-1"} {
				in[n].WaitCount(1, s.fx.Timeouts.Eventually)
			}
			in["sensor-1"].WaitCount(2, s.fx.Timeouts.Eventually)
			Expect(in["sensor-1"].Payloads()).To(Equal([]string{"calibrate", "barrier"}), "sensor-1 gets the multicast exactly once")
			Expect(in["sensor-2"].Payloads()).To(Equal([]string{"barrier"}), "sensor-2 was not a target")
			Expect(in["actuator-1"].Payloads()).To(Equal([]string{"barrier"}), "actuator-1 was not a target")
		})

		It("delivers to each of 1 000 identities exactly once", func() {
			const n = 1000
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("m-%04d", i)
			}
			s.MustRegisterMany(names, func(i int) md { return md{"i": I(int64(i))} })
			in := s.MustReceiveMany(names)
			start := time.Now()
			resp := s.MustMulticast(nil, "to-all")
			Expect(resp.GetTargetCount()).To(Equal(int64(n)))
			Expect(resp.GetDeliveredCount()).To(Equal(int64(n)), "delivered; first failures: %v", firstFailures(resp, 5))
			seen := map[string]bool{}
			for _, st := range resp.GetStatuses() {
				Expect(seen[st.GetIdentity()]).To(BeFalse(), "a status per target, once: %s", st.GetIdentity())
				seen[st.GetIdentity()] = true
			}
			for _, name := range names {
				in[name].WaitCount(1, s.fx.Timeouts.Eventually)
			}
			GinkgoWriter.Printf("multicast to %d: every receiver had its message after %v\n", n, time.Since(start))
			s.MustMulticast(nil, "barrier")
			var wrong []string
			for _, name := range names {
				in[name].WaitCount(2, s.fx.Timeouts.Eventually)
				if p := in[name].Payloads(); len(p) != 2 || p[0] != "to-all" || p[1] != "barrier" {
					wrong = append(wrong, fmt.Sprintf("%s: %q", name, p))
				}
			}
			Expect(wrong).To(BeEmpty(), "receivers that did not get the multicast exactly once")
		})

		It("reports FAILED for a target without a live receiver and never counts it delivered", func() {
			s.MustRegister("listening", md{})
			s.MustRegister("silent", md{})
			listening := s.MustReceive("listening")
			resp := s.MustMulticast(nil, "hello")
			Expect(resp.GetTargetCount()).To(Equal(int64(2)))
			Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{"listening": delivered, "silent": failed}))
			Expect(resp.GetDeliveredCount()).To(Equal(int64(1)))
			Expect(resp.GetFailedCount()).To(Equal(int64(1)))
			listening.WaitCount(1, s.fx.Timeouts.Eventually)

			By("closing a receiver: once its stream has ended it no longer counts")
			s.MustRegister("gone", md{})
			gone := s.MustReceive("gone")
			gone.cancel()
			resp = s.closedReceiverMulticast(gone, "again")
			Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{"listening": delivered, "silent": failed, "gone": failed}))
		})

		It("targets values that just match every operator and never those that almost match", Label("filter"), func() {
			names := slices.Sorted(maps.Keys(nearMissIdentities))
			s.MustRegisterMany(names, func(i int) md { return nearMissIdentities[names[i]] })
			var wrong []string
			for _, c := range nearMisses() {
				// No identity has a receiver: every target is FAILED, and the
				// statuses name the targets the filter selected.
				resp := s.MustMulticast(c.cond, "near-miss")
				var got []string
				for _, st := range resp.GetStatuses() {
					got = append(got, s.name(st.GetIdentity()))
				}
				wrong = append(wrong, nearMissWrong(c, got)...)
			}
			Expect(wrong).To(BeEmpty(), "near misses Multicast targeted wrongly")
		})

		It("answers NotFound when opening the inbox of an identity that is not registered", func() {
			_, err := s.openInbox(s.rc, "never-registered")
			Expect(err).To(fixture.HaveCode(codes.NotFound))
		})

		It("sends nothing to an identity unregistered before the multicast", func() {
			s.MustRegister("stays", md{})
			s.MustRegister("leaves", md{})
			stays, leaves := s.MustReceive("stays"), s.MustReceive("leaves")
			Expect(s.MustUnregister("leaves")).To(BeTrue())
			resp := s.MustMulticast(nil, "first")
			Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{"stays": delivered}))
			stays.WaitCount(1, s.fx.Timeouts.Eventually)
			By("registering it again: the next multicast is the first thing its open inbox gets")
			s.MustRegister("leaves", md{})
			s.MustMulticast(nil, "second")
			leaves.WaitCount(1, s.fx.Timeouts.Eventually)
			Expect(leaves.Payloads()).To(Equal([]string{"second"}), "the unregistered identity received the first multicast")
		})

		It("targets no identity whose TTL has passed", Label("expiry"), func() {
			ttl := s.liveWindow(700*time.Millisecond, 3)
			short, err := s.register(s.fx.Target.Namespace, "short", md{}, ttl, false)
			Expect(err).NotTo(HaveOccurred())
			shortIn, err := s.openInbox(s.rc, "short")
			expectLive(err == nil, short.GetExpiresAt().AsTime(), "Receive opens the inbox of the short registration before its TTL ends (got %v)", err)
			Expect(err).NotTo(HaveOccurred(), "Receive of a live identity")
			s.MustRegister("long", md{})
			long := s.MustReceive("long")
			waitUntil(short.GetExpiresAt().AsTime())
			resp := s.MustMulticast(nil, "after-expiry")
			Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{"long": delivered}))
			long.WaitCount(1, s.fx.Timeouts.Eventually)
			Expect(shortIn.Payloads()).To(BeEmpty())
		})

		It("answers by the caller's deadline, with the stuck target TIMEOUT, when a target's delivery is stuck", Label("deadline"), func() {
			if s.fx.Registry.MessagingSlot != "memstore" {
				Skip(fmt.Sprintf("the messaging slot (%s) drops a slow receiver's messages instead of holding the publisher back, so no target's delivery can be made to stick",
					s.fx.Registry.MessagingSlot))
			}
			s.MustRegister("stuck", md{"role": S("stuck")})
			By("opening the stuck target's inbox and never reading it")
			ctx, cancel := context.WithCancel(context.Background())
			DeferCleanup(cancel)
			stream, err := s.rc.Receive(ctx)
			Expect(err).NotTo(HaveOccurred(), "Receive")
			Expect(stream.Send(&registryv1.ReceiveRequest{Request: &registryv1.ReceiveRequest_Open_{
				Open: &registryv1.ReceiveRequest_Open{Identity: s.id("stuck")}}})).To(Succeed())
			ev, err := stream.Recv()
			Expect(err).NotTo(HaveOccurred(), "the Subscribed event")
			Expect(ev.GetSubscribed()).NotTo(BeNil(), "the first event is Subscribed")

			By("multicasting 1 MiB messages to it with a short deadline until its delivery sticks")
			// The memstore messaging slot holds a publish to a full buffer
			// back for its block timeout (1 s), then ends the subscription:
			// a deadline well inside it shows whether the fan-out ends by
			// the caller's deadline or runs on and misses it.
			const deadline = 900 * time.Millisecond
			const budget = 128 // MiB; the pipes of gRPC and memstore hold far less
			payload := bytes.Repeat([]byte("x"), 1<<20-1024)
			for i := range budget {
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				resp, err := s.rc.Multicast(ctx, &registryv1.MulticastRequest{Filter: s.scoped(eq("role", S("stuck"))), Payload: payload})
				took := time.Since(start)
				cancel()
				Expect(err).NotTo(HaveOccurred(), "Multicast %d with a deadline of %v must answer by it, with the targets it could not reach TIMEOUT", i+1, deadline)
				Expect(s.byName(resp)).To(HaveKey("stuck"))
				if st := s.byName(resp)["stuck"]; st != delivered {
					Expect(st).To(Equal(timedOut), "the stuck target's status once its delivery sticks (after %d MiB)", i)
					Expect(took).To(BeNumerically("<=", deadline), "the answer came by the deadline")
					GinkgoWriter.Printf("delivery stuck after %d MiB; the multicast answered after %v of its %v\n", i, took, deadline)
					return
				}
			}
			fixture.HarnessFail(fmt.Errorf("sent %d MiB to a receiver that does not read, and the memstore messaging slot never held a publish back", budget))
		})

		It("keeps inboxes apart for identities whose names contain '.', '*', '>', '/', spaces, '%' or Unicode", Label("isolation"), func() {
			for i, n := range specialNames {
				s.MustRegister(n, md{"n": I(int64(i))})
			}
			in := s.MustReceiveMany(specialNames)
			for i, n := range specialNames {
				resp := s.MustMulticast(eq("n", I(int64(i))), n)
				Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{n: delivered}), "multicast to %q", n)
			}
			s.MustMulticast(nil, "barrier")
			var wrong []string
			for _, n := range specialNames {
				in[n].WaitCount(2, s.fx.Timeouts.Eventually)
				if p := in[n].Payloads(); len(p) != 2 || p[0] != n || p[1] != "barrier" {
					wrong = append(wrong, fmt.Sprintf("%q got %q", n, p))
				}
			}
			Expect(wrong).To(BeEmpty(), "inboxes that got another identity's message")
		})

		It("counts a receiver on another proxy as live only when its messaging slot reaches that receiver", Label("restart"), func() {
			if !s.fx.Registry.SharedState {
				Skip(fmt.Sprintf("the registry slot (%s) is not shared between proxies", s.fx.Registry.RegistrySlot))
			}
			if s.fx.LaunchProxy == nil {
				Skip("the fixture cannot launch another proxy")
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Handshake+s.fx.Timeouts.Eventually)
			defer cancel()
			px, err := s.fx.LaunchProxy(ctx)
			if px != nil {
				fixture.DeferExpect("stop the second proxy", px.Stop)
			}
			fixture.Harness(err, "start a second proxy on the same slots")
			s.MustRegister("remote", md{})
			in := s.MustReceive("remote") // on the fixture's proxy
			other := px.Target(s.fx.Target.Namespace).Registry()
			resp, err := other.Multicast(s.ctx(), &registryv1.MulticastRequest{Filter: s.scoped(nil), Payload: []byte("from-afar")})
			Expect(err).NotTo(HaveOccurred())
			if s.fx.Registry.MessagingSlot == "memstore" {
				Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{"remote": failed}),
					"each proxy's memstore messaging slot is a bus of its own: the other proxy cannot reach the receiver")
				return
			}
			Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{"remote": delivered}))
			in.WaitCount(1, s.fx.Timeouts.Eventually)
			Expect(in.Payloads()).To(Equal([]string{"from-afar"}))
		})

		It("stays consistent under 100 concurrent registers, 50 enumerates and 10 multicasts", Label("concurrency"), func() {
			base := []string{"base-0", "base-1", "base-2", "base-3", "base-4"}
			for _, n := range base {
				s.MustRegister(n, md{"group": S("base")})
			}
			in := s.MustReceiveMany(base)
			var wg sync.WaitGroup
			errs := make(chan error, 160)
			run := func(fn func() error) {
				wg.Add(1)
				go func() {
					defer GinkgoRecover()
					defer wg.Done()
					if err := fn(); err != nil {
						errs <- err
					}
				}()
			}
			for i := range 100 {
				run(func() error {
					_, err := s.register(s.fx.Target.Namespace, fmt.Sprintf("c-%03d", i), md{"group": S("new")}, time.Minute, false)
					return err
				})
			}
			for range 50 {
				run(func() error {
					_, err := s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: s.scoped(nil), PageSize: 37})
					return err
				})
			}
			for i := range 10 {
				run(func() error {
					resp, err := s.rc.Multicast(s.ctx(), &registryv1.MulticastRequest{Filter: s.scoped(eq("group", S("base"))),
						Payload: []byte(fmt.Sprintf("mc-%d", i))})
					if err == nil && resp.GetDeliveredCount() != int64(len(base)) {
						err = fmt.Errorf("multicast %d: %d of %d delivered", i, resp.GetDeliveredCount(), len(base))
					}
					return err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				Expect(err).NotTo(HaveOccurred())
			}
			ids, total := s.enumerate(s.rc, s.scoped(nil), 0)
			Expect(total).To(Equal(int64(105)))
			Expect(ids).To(HaveLen(105), "the end state holds every identity once")
			for _, n := range base {
				in[n].WaitCount(10, s.fx.Timeouts.Eventually)
				Expect(in[n].Payloads()).To(ConsistOf("mc-0", "mc-1", "mc-2", "mc-3", "mc-4", "mc-5", "mc-6", "mc-7", "mc-8", "mc-9"),
					"%s got each multicast once", n)
			}
		})

		It("refuses at-least-once with FailedPrecondition when the messaging slot is not durable", func() {
			if s.fx.Declared().Has(capability.RegistryAtLeastOnce) {
				Skip(fmt.Sprintf("the messaging slot (%s) is durable: at-least-once is offered", s.fx.Registry.MessagingSlot))
			}
			_, err := s.rc.Multicast(s.ctx(), &registryv1.MulticastRequest{Filter: s.scoped(nil), Payload: []byte("x"),
				Delivery: registryv1.Delivery_DELIVERY_AT_LEAST_ONCE, Timeout: durationpb.New(time.Second)})
			Expect(err).To(fixture.HaveCode(codes.FailedPrecondition))
		})
	})
}

// closedReceiverMulticast multicasts to every identity of the spec once the
// closed inbox's receiver is gone: a stream the client cancelled ends on the
// proxy shortly after, and until then it may still count as live.
func (s *session) closedReceiverMulticast(gone *inbox, payload string) *registryv1.MulticastResponse {
	GinkgoHelper()
	var resp *registryv1.MulticastResponse
	Eventually(func() registryv1.TargetStatus_Status {
		resp = s.MustMulticast(nil, payload)
		return s.byName(resp)[gone.name]
	}).WithTimeout(s.fx.Timeouts.Eventually).WithPolling(20*time.Millisecond).Should(Equal(failed),
		"a receiver whose stream was closed must stop counting as live")
	return resp
}

func firstFailures(resp *registryv1.MulticastResponse, n int) []string {
	var out []string
	for _, st := range resp.GetStatuses() {
		if st.GetStatus() != delivered && len(out) < n {
			out = append(out, fmt.Sprintf("%s %s %s", st.GetIdentity(), st.GetStatus(), st.GetError()))
		}
	}
	return out
}
