package registry

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/types/known/durationpb"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

func describeAtLeastOnce(sess func() *session) {
	Context("at-least-once", atLeastOnce, Label("delivery"), func() {
		var s *session
		BeforeEach(func() { s = sess() })

		// multicastAsync starts an at-least-once multicast and returns its
		// answer on a channel.
		multicastAsync := func(f *registryv1.Filter, payload string, timeout time.Duration) <-chan *registryv1.MulticastResponse {
			out := make(chan *registryv1.MulticastResponse, 1)
			go func() {
				defer GinkgoRecover()
				resp, err := s.rc.Multicast(s.ctx(), &registryv1.MulticastRequest{Filter: s.scoped(f), Payload: []byte(payload),
					Delivery: registryv1.Delivery_DELIVERY_AT_LEAST_ONCE, Timeout: durationpb.New(timeout)})
				Expect(err).NotTo(HaveOccurred(), "at-least-once Multicast")
				out <- resp
			}()
			return out
		}

		It("reports DELIVERED for a receiver that acknowledged within the timeout and TIMEOUT for one that did not", func() {
			s.MustRegister("acks", md{})
			s.MustRegister("ignores", md{})
			s.MustRegister("absent", md{})
			in := s.MustReceiveMany([]string{"acks", "ignores"})
			// The receiver that acknowledges must manage to within the
			// timeout: a few calls, so a window of at least 3 s.
			done := multicastAsync(nil, "please-ack", s.liveWindow(3*time.Second, 3))
			in["acks"].WaitCount(1, s.fx.Timeouts.Eventually)
			m := in["acks"].Messages()[0]
			Expect(string(m.GetPayload())).To(Equal("please-ack"))
			Expect(m.GetAttempt()).To(BeNumerically(">=", 1))
			Expect(in["acks"].ack(m.GetMessageId())).To(Succeed())
			var resp *registryv1.MulticastResponse
			Eventually(done).WithTimeout(s.fx.Timeouts.Eventually).Should(Receive(&resp))
			Expect(resp.GetTargetCount()).To(Equal(int64(3)))
			Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{"acks": delivered, "ignores": timedOut, "absent": timedOut}))
			Expect(resp.GetDeliveredCount()).To(Equal(int64(1)))
			Expect(in["ignores"].Messages()).NotTo(BeEmpty(), "the receiver that did not acknowledge got the message")
		})

		It("redelivers to a receiver that did not acknowledge, also after it reconnects", func() {
			s.MustRegister("dev", md{})
			first := s.MustReceive("dev")
			done := multicastAsync(nil, "again", 10*time.Second)
			By("receiving without acknowledging: the message comes again after the ack wait")
			first.WaitCount(2, s.fx.Timeouts.Eventually)
			msgs := first.Messages()
			Expect(msgs[0].GetMessageId()).To(Equal(msgs[1].GetMessageId()), "the redelivery is the same message")
			Expect(msgs[1].GetAttempt()).To(BeNumerically(">", msgs[0].GetAttempt()), "attempt counts deliveries")
			By("reconnecting without acknowledging: the new inbox gets it again")
			first.cancel()
			second := s.MustReceive("dev")
			second.WaitCount(1, s.fx.Timeouts.Eventually)
			m := second.Messages()[0]
			Expect(string(m.GetPayload())).To(Equal("again"))
			Expect(m.GetAttempt()).To(BeNumerically(">=", 3))
			Expect(second.ack(m.GetMessageId())).To(Succeed())
			var resp *registryv1.MulticastResponse
			Eventually(done).WithTimeout(s.fx.Timeouts.Eventually).Should(Receive(&resp))
			Expect(s.byName(resp)).To(Equal(map[string]registryv1.TargetStatus_Status{"dev": delivered}))
		})
	})
}
