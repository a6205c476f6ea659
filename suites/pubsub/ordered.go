package pubsub

import (
	"fmt"
	"strconv"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

func describeOrdered(sess func() *session) {
	Context("ordered", basic, ordered, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		It("delivers the messages of each of 10 concurrent publishers in publish order to every subscriber", func() {
			const publishers, subscribers = 10, 3
			// Every subscriber must be able to hold what is in flight without
			// its buffer filling up: that is the slow-consumer spec's business.
			perPublisher := min(100, s.window(16)*2/publishers)
			Expect(perPublisher).To(BeNumerically(">=", 10), "the declared subscription buffer is too small for the spec")
			topic := s.topic("ordered")
			var cs []*collector
			for range subscribers {
				cs = append(cs, s.MustSubscribe(topic).collect())
			}
			// Publishers 0-4 call Publish one message at a time, 5-9 send
			// batches of 10: a batch is one publisher too.
			var wg sync.WaitGroup
			errs := make(chan error, publishers)
			for p := range publishers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < perPublisher; {
						if p < publishers/2 {
							_, err := s.ps.Publish(s.ctx(), &pubsubv1.PublishRequest{Topic: topic, Payload: []byte(fmt.Sprintf("%d/%d", p, i)),
								Metadata: map[string]string{"publisher": strconv.Itoa(p), "seq": strconv.Itoa(i)}})
							if err != nil {
								errs <- fmt.Errorf("publisher %d message %d: %w", p, i, err)
								return
							}
							i++
							continue
						}
						var batch []*pubsubv1.OutgoingMessage
						for ; i < perPublisher && len(batch) < 10; i++ {
							batch = append(batch, &pubsubv1.OutgoingMessage{Topic: topic, Payload: []byte(fmt.Sprintf("%d/%d", p, i)),
								Metadata: map[string]string{"publisher": strconv.Itoa(p), "seq": strconv.Itoa(i)}})
						}
						if _, err := s.ps.PublishBatch(s.ctx(), &pubsubv1.PublishBatchRequest{Messages: batch}); err != nil {
							errs <- fmt.Errorf("publisher %d batch ending at %d: %w", p, i, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				Expect(err).NotTo(HaveOccurred())
			}
			total := publishers * perPublisher
			for i, c := range cs {
				c.WaitCount(total, s.fx.Timeouts.Eventually, fmt.Sprintf("subscriber %d", i))
				next := make([]int, publishers)
				var disorder []string
				for _, m := range c.Messages() {
					p, _ := strconv.Atoi(m.GetMetadata()["publisher"])
					seq, _ := strconv.Atoi(m.GetMetadata()["seq"])
					Expect(string(m.GetPayload())).To(Equal(fmt.Sprintf("%d/%d", p, seq)), "metadata travels with its payload")
					if seq != next[p] && len(disorder) < 10 {
						disorder = append(disorder, fmt.Sprintf("publisher %d: got message %d, want %d", p, seq, next[p]))
					}
					next[p] = seq + 1
				}
				Expect(disorder).To(BeEmpty(), "subscriber %d received messages out of publish order", i)
				Expect(c.Count()).To(Equal(total), "subscriber %d", i)
			}
		})
	})
}
