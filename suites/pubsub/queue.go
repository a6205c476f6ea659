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

		It("rejects an invalid queue group name with InvalidArgument naming the queue group", func() {
			for _, bad := range []string{"has space", "star*", "gt>", strings.Repeat("g", 129)} {
				_, err := s.subscribe(&pubsubv1.Subscription{Topic: s.topic("q"), QueueGroup: bad})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "queue_group"), "queue group %q", bad)
			}
		})
	})
}
