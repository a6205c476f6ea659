package pubsub

import (
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

func describeQueue(sess func() *session) {
	Context("queue", basic, queue, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		// union returns the ids every collector received, concatenated.
		union := func(cs []*collector) []string {
			var all []string
			for _, c := range cs {
				all = append(all, ids(c.Messages())...)
			}
			return all
		}
		// waitTotal waits until the collectors hold n messages together.
		waitTotal := func(cs []*collector, n int, what string) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				total := 0
				for _, c := range cs {
					g.Expect(c.ended()).To(BeNil(), "%s: a member's subscription ended", what)
					g.Expect(c.Dropped()).To(BeZero(), "%s: the plugin dropped messages for a member that reads promptly", what)
					total += c.Count()
				}
				g.Expect(total).To(BeNumerically(">=", n), "%s: messages received by the members together", what)
			}).WithTimeout(s.fx.Timeouts.Eventually).WithPolling(5 * time.Millisecond).Should(Succeed())
		}
		publish := func(topic string, n int, tag string) []string {
			GinkgoHelper()
			var out []string
			for start := 0; start < n; start += 10 {
				var batch []*pubsubv1.OutgoingMessage
				for i := start; i < min(start+10, n); i++ {
					batch = append(batch, &pubsubv1.OutgoingMessage{Topic: topic, Payload: []byte(fmt.Sprintf("%s%d", tag, i))})
				}
				out = append(out, s.MustPublishBatch(batch)...)
			}
			return out
		}

		It("delivers each message to exactly one member of a group, while plain subscribers and other groups get every message", func() {
			topic := s.topic("work")
			var workers, auditors []*collector
			for range 3 {
				workers = append(workers, s.MustSubscribeQueue(topic, "workers").collect())
			}
			for range 2 {
				auditors = append(auditors, s.MustSubscribeQueue(topic, "auditors").collect())
			}
			plain := s.MustSubscribe(topic).collect()
			other := s.MustSubscribeQueue(s.topic("work2"), "workers").collect() // same group name, another topic

			want := publish(topic, min(300, s.window(8)), "m")
			waitTotal(workers, len(want), "group workers")
			waitTotal(auditors, len(want), "group auditors")
			plain.WaitCount(len(want), s.fx.Timeouts.Eventually, "the plain subscriber")
			// A duplicate would travel with the others: one more round.
			last := publish(topic, 1, "last")
			want = append(want, last...)
			waitTotal(workers, len(want), "group workers")
			waitTotal(auditors, len(want), "group auditors")
			plain.WaitCount(len(want), s.fx.Timeouts.Eventually, "the plain subscriber")

			expectExactlyOnce(union(workers), want, "group workers (all members together)")
			expectExactlyOnce(union(auditors), want, "group auditors (all members together)")
			expectExactlyOnce(ids(plain.Messages()), want, "the plain subscriber")
			Expect(other.Count()).To(BeZero(), "a group of the same name on another topic received messages")
		})

		It("delivers to the remaining members after one leaves", func() {
			topic := s.topic("handover")
			leaver := s.MustSubscribeQueue(topic, "g")
			stay := []*collector{s.MustSubscribeQueue(topic, "g").collect(), s.MustSubscribeQueue(topic, "g").collect()}
			Expect(leaver.unsubscribe()).To(Succeed())
			var left []*pubsubv1.Message
			for range 100 {
				ev, err := leaver.recv(s.fx.Timeouts.Eventually)
				Expect(err).NotTo(HaveOccurred(), "waiting for Unsubscribed")
				if ev.GetUnsubscribed() != nil {
					break
				}
				left = append(left, ev.GetMessage())
			}
			Expect(left).To(BeEmpty(), "nothing was published before the member left")
			want := publish(topic, min(100, s.window(8)), "after")
			waitTotal(stay, len(want), "remaining members")
			last := publish(topic, 1, "last")
			want = append(want, last...)
			waitTotal(stay, len(want), "remaining members")
			expectExactlyOnce(union(stay), want, "remaining members together")
			_, err := leaver.recv(s.fx.Timeouts.Eventually)
			Expect(isEOF(err)).To(BeTrue(), "after Unsubscribed the stream must end cleanly, got %v", err)
		})

		It("judges every member across joins and leaves: each message goes to exactly one member live when it was published, a later member gets a share and nothing from before, a member that left gets nothing more", func() {
			topic := s.topic("members")
			type member struct {
				name        string
				c           *collector
				join, leave int // phases [join, leave) in which it is live; leave -1 while live
			}
			var (
				members []*member
				phase   int
				phaseOf = map[string]int{} // message id → phase it was published in
				wantAll []string
			)
			join := func(name string) {
				members = append(members, &member{name: name, c: s.MustSubscribeQueue(topic, "g").collect(), join: phase, leave: -1})
			}
			leave := func(name string) {
				for _, m := range members {
					if m.name == name {
						m.c.leave(s.fx.Timeouts.Eventually, "member "+name+" leaving")
						m.leave = phase
						return
					}
				}
				Fail("no member " + name)
			}
			cols := func() []*collector {
				var out []*collector
				for _, m := range members {
					out = append(out, m.c)
				}
				return out
			}
			// The reference: another group of two members and a plain
			// subscriber, live for the whole spec.
			others := []*collector{s.MustSubscribeQueue(topic, "h").collect(), s.MustSubscribeQueue(topic, "h").collect()}
			plain := s.MustSubscribe(topic).collect()
			perPhase := min(40, s.window(8))
			round := func(n int) {
				GinkgoHelper()
				got := publish(topic, n, fmt.Sprintf("p%d-", phase))
				for _, id := range got {
					phaseOf[id] = phase
				}
				wantAll = append(wantAll, got...)
				what := fmt.Sprintf("phase %d", phase)
				Eventually(func(g Gomega) {
					total := 0
					for _, m := range members {
						if m.leave < 0 {
							g.Expect(m.c.ended()).To(BeNil(), "%s: the subscription of live member %s ended", what, m.name)
						}
						g.Expect(m.c.Dropped()).To(BeZero(), "%s: the plugin dropped messages for member %s, which reads promptly", what, m.name)
						total += m.c.Count()
					}
					g.Expect(total).To(BeNumerically(">=", len(wantAll)), "%s: messages received by the members of group g together", what)
				}).WithTimeout(s.fx.Timeouts.Eventually).WithPolling(5 * time.Millisecond).Should(Succeed())
				waitTotal(others, len(wantAll), what+", group h")
				plain.WaitCount(len(wantAll), s.fx.Timeouts.Eventually, what+", the plain subscriber")
				phase++
			}

			join("A")
			join("B")
			round(perPhase) // phase 0: A B
			join("C")
			round(perPhase) // phase 1: A B C
			leave("A")
			round(perPhase) // phase 2: B C
			join("D")
			leave("B")
			round(perPhase) // phase 3: C D
			leave("C")
			join("E")
			round(perPhase) // phase 4: D E
			leave("E")
			round(1) // phase 5: D alone; a late or duplicate delivery would travel before it
			observe(quiet)

			live := func(m *member, p int) bool { return m.join <= p && (m.leave < 0 || p < m.leave) }
			receivers := map[string][]string{} // message id → members that got it
			for _, m := range members {
				var wrong []string
				share := 0
				for _, msg := range m.c.Messages() {
					id := msg.GetId()
					receivers[id] = append(receivers[id], m.name)
					p, ok := phaseOf[id]
					if !ok {
						continue // reported below as not published to this topic
					}
					if live(m, p) {
						share++
					} else {
						wrong = append(wrong, fmt.Sprintf("%s (phase %d)", id, p))
					}
				}
				Expect(wrong).To(BeEmpty(), "member %s (live in phases [%d, %d)) received messages published while it was not a member", m.name, m.join, m.leave)
				published := 0
				for _, p := range phaseOf {
					if live(m, p) {
						published++
					}
				}
				Expect(share).To(BeNumerically(">", 0), "member %s (live in phases [%d, %d), while %d messages were published) got no share of the group's messages", m.name, m.join, m.leave, published)
				if m.leave >= 0 {
					done, after := m.c.gotUnsubscribed()
					Expect(done).To(BeTrue(), "member %s: Unsubscribed", m.name)
					Expect(after).To(BeZero(), "member %s received messages after its Unsubscribed event", m.name)
					Eventually(m.c.ended).WithTimeout(s.fx.Timeouts.Eventually).Should(MatchError(ContainSubstring("EOF")),
						"member %s: after Unsubscribed the stream must end cleanly", m.name)
				}
			}
			var notOnce []string
			for _, id := range wantAll {
				if len(receivers[id]) != 1 {
					notOnce = append(notOnce, fmt.Sprintf("%s (phase %d) → %v", id, phaseOf[id], receivers[id]))
				}
			}
			Expect(notOnce).To(BeEmpty(), "group g: messages not delivered to exactly one member")
			expectExactlyOnce(union(cols()), wantAll, "group g (all members together)")
			expectExactlyOnce(union(others), wantAll, "group h on the same topic (both members together)")
			expectExactlyOnce(ids(plain.Messages()), wantAll, "the plain subscriber on the same topic")
		})

		It("rejects an invalid queue group name with InvalidArgument naming the queue group", func() {
			for _, bad := range []string{"has space", "star*", "gt>", strings.Repeat("g", 129)} {
				_, err := s.subscribe(&pubsubv1.Subscription{Topic: s.topic("q"), QueueGroup: bad})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "queue_group"), "queue group %q", bad)
			}
		})
	})
}
