package pubsub

import (
	"fmt"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/prism-suite/prism/harness/backend"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// ackWait is the ack deadline the durable specs ask for.
const ackWait = 500 * time.Millisecond

// observe waits for d. It is not a readiness wait: the durable specs use it
// as the window in which a redelivery that must not happen would show.
func observe(d time.Duration) { time.Sleep(d) }

func describeDurable(sess func() *session) {
	Context("durable", basic, durable, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		mustSubscribeDurable := func(topic, name string) *subscription {
			GinkgoHelper()
			sub, err := s.subscribeDurable(topic, name, ackWait)
			Expect(err).NotTo(HaveOccurred(), "Subscribe durable %q to %q", name, topic)
			return sub
		}
		tokens := func(msgs []*pubsubv1.Message) []string {
			out := make([]string, len(msgs))
			for i, m := range msgs {
				Expect(m.GetAckToken()).NotTo(BeEmpty(), "a durable delivery must carry an ack token")
				out[i] = m.GetAckToken()
			}
			return out
		}
		mustAck := func(topic, name string, toks []string) {
			GinkgoHelper()
			_, err := s.ps.Ack(s.ctx(), &pubsubv1.AckRequest{Topic: topic, Durable: name, AckTokens: toks})
			Expect(err).NotTo(HaveOccurred(), "Ack of %d tokens", len(toks))
		}
		// unsubscribeAndWait unsubscribes and reads up to Unsubscribed.
		unsubscribeAndWait := func(sub *subscription) {
			GinkgoHelper()
			Expect(sub.unsubscribe()).To(Succeed())
			for range 1000 {
				ev, err := sub.recv(s.fx.Timeouts.Eventually)
				Expect(err).NotTo(HaveOccurred(), "waiting for Unsubscribed")
				if ev.GetUnsubscribed() != nil {
					return
				}
			}
			Fail("no Unsubscribed after 1000 events")
		}

		It("redelivers a message that was not acknowledged after the ack deadline, counting the attempts", func() {
			topic := s.topic("redeliver")
			c := mustSubscribeDurable(topic, "redeliver").collect()
			id := s.MustPublish(topic, []byte("acknowledged late"), nil)
			c.WaitCount(1, s.fx.Timeouts.Eventually, "durable subscriber")
			first := c.Messages()[0]
			got1 := time.Now()
			Expect(first.GetId()).To(Equal(id))
			Expect(first.GetDeliveryAttempt()).To(Equal(int32(1)), "the first delivery is attempt 1")
			c.WaitCount(2, ackWait+s.fx.Timeouts.Eventually, "durable subscriber, waiting for the redelivery")
			second := c.Messages()[1]
			Expect(second.GetId()).To(Equal(id), "the unacknowledged message must be delivered again")
			Expect(second.GetDeliveryAttempt()).To(Equal(int32(2)), "the redelivery is attempt 2")
			Expect(time.Since(got1)).To(BeNumerically(">=", ackWait/2), "redelivered before the ack deadline")
			mustAck(topic, "redeliver", tokens(c.Messages()[1:2]))
			observe(3 * ackWait)
			Expect(ids(c.Messages())).To(Equal([]string{id, id}), "an acknowledged message was delivered again")
		})

		It("never redelivers acknowledged messages, also after reconnecting, and resumes with what was published meanwhile", func() {
			topic := s.topic("resume")
			sub1 := mustSubscribeDurable(topic, "resume")
			c1 := sub1.collect()
			var acked []string
			for i := range 10 {
				acked = append(acked, s.MustPublish(topic, []byte(fmt.Sprintf("a%d", i)), nil))
			}
			c1.WaitCount(len(acked), s.fx.Timeouts.Eventually, "first subscription")
			mustAck(topic, "resume", tokens(c1.Messages()))
			Expect(sub1.unsubscribe()).To(Succeed())
			Eventually(c1.ended).WithTimeout(s.fx.Timeouts.Eventually).Should(MatchError(ContainSubstring("EOF")), "the first subscription must end after unsubscribe")

			var meanwhile []string
			for i := range 5 {
				meanwhile = append(meanwhile, s.MustPublish(topic, []byte(fmt.Sprintf("b%d", i)), nil))
			}
			c2 := mustSubscribeDurable(topic, "resume").collect()
			c2.WaitCount(len(meanwhile), s.fx.Timeouts.Eventually, "second subscription")
			mustAck(topic, "resume", tokens(c2.Messages()))
			observe(3 * ackWait)

			got := map[string]bool{}
			for _, m := range c2.Messages() {
				got[m.GetId()] = true
			}
			for _, id := range acked {
				Expect(got[id]).To(BeFalse(), "message %s was acknowledged, yet delivered again after reconnecting", id)
			}
			for _, id := range meanwhile {
				Expect(got[id]).To(BeTrue(), "message %s, published while no subscription was open, was not delivered on resuming", id)
			}
			expectExactlyOnce(ids(c1.Messages()), acked, "first subscription")
		})

		It("starts a new durable consumer with the messages published after its first subscription, whatever other consumers of the topic hold", func() {
			topic := s.topic("start")
			// An ack deadline no step of this spec comes near: a redelivery
			// is not what it looks at.
			const long = 30 * time.Second
			sub := func(name string) *collector {
				GinkgoHelper()
				x, err := s.subscribeDurable(topic, name, long)
				Expect(err).NotTo(HaveOccurred(), "Subscribe durable %q to %q", name, topic)
				return x.collect()
			}
			var before []string
			// Published before any consumer of the topic existed.
			for i := range 3 {
				before = append(before, s.MustPublish(topic, []byte(fmt.Sprintf("prehistory%d", i)), nil))
			}
			plain := s.MustSubscribe(topic).collect()
			a := sub("a")
			var held []string
			for i := range 6 {
				held = append(held, s.MustPublish(topic, []byte(fmt.Sprintf("held%d", i)), nil))
			}
			plain.WaitCount(len(held), s.fx.Timeouts.Eventually, "the plain subscriber")
			old := func() map[string]bool {
				m := map[string]bool{}
				for _, id := range before {
					m[id] = true
				}
				return m
			}
			// expectOnlyAfter waits for the markers at c and checks that c
			// received them and nothing published before it was created.
			expectOnlyAfter := func(c *collector, markers []string, what string) {
				GinkgoHelper()
				c.WaitCount(len(markers), s.fx.Timeouts.Eventually, what)
				was := old()
				got := map[string]bool{}
				var early, other []string
				for _, m := range c.Messages() {
					got[m.GetId()] = true
					switch {
					case was[m.GetId()]:
						early = append(early, fmt.Sprintf("%s (%q)", m.GetId(), m.GetPayload()))
					case !slices.Contains(markers, m.GetId()):
						other = append(other, m.GetId())
					}
				}
				Expect(early).To(BeEmpty(), "%s received messages published before it was created", what)
				Expect(other).To(BeEmpty(), "%s received messages that were never published to its topic", what)
				for _, id := range markers {
					Expect(got[id]).To(BeTrue(), "%s: message %s, published after it was created, was not delivered", what, id)
				}
			}

			expectOnlyAfter(a, held, "consumer a, made after 3 messages were published,")
			var ackA []string // a holds 2 acknowledged and 4 unacknowledged messages
			for _, m := range a.Messages() {
				if m.GetId() == held[0] || m.GetId() == held[1] {
					ackA = append(ackA, m.GetAckToken())
				}
			}
			mustAck(topic, "a", ackA)
			before = append(before, held...)
			// A moment before: Publish has returned, no delivery awaited.
			before = append(before, s.MustPublish(topic, []byte("just before"), nil))

			b := sub("b")
			markers := []string{s.MustPublish(topic, []byte("marker1"), nil)}
			b.WaitCount(1, s.fx.Timeouts.Eventually, "new consumer b")
			observe(quiet)
			markers = append(markers, s.MustPublish(topic, []byte("marker2"), nil))
			expectOnlyAfter(b, markers, "new consumer b")
			mustAck(topic, "b", tokens(b.Messages()))
			before = append(before, markers...)

			// A consumer deleted and made again is new.
			a.leave(s.fx.Timeouts.Eventually, "consumer a")
			_, err := s.ps.DeleteDurable(s.ctx(), &pubsubv1.DeleteDurableRequest{Topic: topic, Durable: "a"})
			Expect(err).NotTo(HaveOccurred(), "DeleteDurable of consumer a")
			again := sub("a")
			marker3 := s.MustPublish(topic, []byte("marker3"), nil)
			again.WaitCount(1, s.fx.Timeouts.Eventually, "consumer a made again")
			observe(quiet)
			marker4 := s.MustPublish(topic, []byte("marker4"), nil)
			expectOnlyAfter(again, []string{marker3, marker4}, "consumer a, deleted and made again,")
			mustAck(topic, "a", tokens(again.Messages()))
			plain.WaitCount(len(before)-3+2, s.fx.Timeouts.Eventually, "the plain subscriber")
			// The plain subscriber came after the first 3 messages.
			expectExactlyOnce(ids(plain.Messages()), append(slices.Clone(before[3:]), marker3, marker4), "the plain subscriber, made after 3 messages were published,")
		})

		It("keeps unacknowledged messages across a backend restart", outage, func() {
			o, ok := s.fx.Backend.(backend.Outager)
			if !ok {
				Skip("the backend instance cannot be restarted: its provider does not implement backend.Outager")
			}
			if !o.Persistent() {
				Skip("the backend instance does not keep data across a restart (backend.Outager.Persistent is false)")
			}
			// A backend, plugin (and proxy) of the spec's own: the restart
			// cannot reach the specs that follow.
			p := s.fx.Private()
			s = s.on(p)
			topic := s.topic("restart")
			unsubscribeAndWait(mustSubscribeDurable(topic, "restart"))
			var want []string
			for i := range 20 {
				want = append(want, s.MustPublish(topic, []byte(fmt.Sprintf("kept%d", i)), nil))
			}

			p.Down()
			p.Up()

			var c *collector
			Eventually(func() error {
				sub, err := s.subscribeDurable(topic, "restart", ackWait)
				if err != nil {
					return err
				}
				c = sub.collect()
				return nil
			}).WithTimeout(2*s.fx.Timeouts.Eventually).WithPolling(100*time.Millisecond).Should(Succeed(),
				"the durable consumer could not be subscribed after the backend restarted")
			Eventually(func(g Gomega) {
				got := map[string]bool{}
				for _, m := range c.Messages() {
					got[m.GetId()] = true
				}
				var missing []string
				for _, id := range want {
					if !got[id] {
						missing = append(missing, id)
					}
				}
				g.Expect(missing).To(BeEmpty(), "messages published before the restart and never acknowledged")
			}).WithTimeout(s.fx.Timeouts.Eventually).WithPolling(10 * time.Millisecond).Should(Succeed())
			mustAck(topic, "restart", tokens(c.Messages()))

			// Recovery is the plugin's business: it reports HEALTHY again.
			Eventually(func() lifecyclev1.HealthCheckResponse_Status {
				h, err := p.Health(s.ctx())
				if err != nil {
					return lifecyclev1.HealthCheckResponse_STATUS_UNSPECIFIED
				}
				return h.GetStatus()
			}).WithTimeout(s.fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).Should(Equal(lifecyclev1.HealthCheckResponse_STATUS_HEALTHY),
				"the plugin did not report HEALTHY after the backend came back")
		})

		It("rejects acknowledgements for a consumer that does not exist (NotFound) or with another consumer's token (InvalidArgument)", func() {
			topic := s.topic("tokens")
			c := mustSubscribeDurable(topic, "owner").collect()
			mustSubscribeDurable(topic, "other")
			s.MustPublish(topic, []byte("x"), nil)
			c.WaitCount(1, s.fx.Timeouts.Eventually, "durable subscriber")
			tok := c.Messages()[0].GetAckToken()
			_, err := s.ps.Ack(s.ctx(), &pubsubv1.AckRequest{Topic: topic, Durable: "other", AckTokens: []string{tok}})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "ack_token"), "Ack on consumer \"other\" with a token of \"owner\"")
			_, err = s.ps.Ack(s.ctx(), &pubsubv1.AckRequest{Topic: topic, Durable: "never-made", AckTokens: []string{tok}})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "Ack on a consumer that does not exist")
			_, err = s.ps.DeleteDurable(s.ctx(), &pubsubv1.DeleteDurableRequest{Topic: topic, Durable: "never-made"})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "DeleteDurable of a consumer that does not exist")
			_, err = s.ps.Ack(s.ctx(), &pubsubv1.AckRequest{Topic: s.topic("tokens-elsewhere"), Durable: "owner", AckTokens: []string{tok}})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "Ack on a consumer name of another topic, where it does not exist")
			mustAck(topic, "owner", []string{tok})
		})
	})
}
