package pubsub

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// oneMiB is the large-payload size the suite requires a plugin to deliver.
const oneMiB = 1 << 20

// clockSkew is how far a publish time may lie outside the Publish call as
// the suite measured it (plugin and suite clocks may differ a little).
const clockSkew = 2 * time.Second

func describeBasic(sess func() *session) {
	Context("basic", basic, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		It("delivers payloads of every byte value, an empty payload and a 1 MiB payload unchanged", func() {
			Expect(s.fx.Description.GetLimits().GetMaxPayloadBytes()).To(BeNumerically(">=", oneMiB),
				"a plugin declaring pubsub.basic must accept payloads of at least 1 MiB")
			topic := s.topic("bytes")
			c := s.MustSubscribe(topic).collect()
			all := make([]byte, 0, 512)
			for i := range 256 {
				all = append(all, byte(i))
			}
			for i := 255; i >= 0; i-- {
				all = append(all, byte(i))
			}
			big := bytes.Repeat([]byte("0123456789abcdef"), oneMiB/16)
			big[0], big[len(big)-1] = 0, 255
			payloads := [][]byte{all, {}, big, {0}}
			var want []string
			for _, p := range payloads {
				want = append(want, s.MustPublish(topic, p, nil))
			}
			c.WaitCount(len(payloads), s.fx.Timeouts.Eventually, "subscriber")
			got := c.Messages()
			expectExactlyOnce(ids(got), want, "subscriber")
			byID := map[string][]byte{}
			for _, m := range got {
				byID[m.GetId()] = m.GetPayload()
			}
			for i, id := range want {
				Expect(bytes.Equal(byID[id], payloads[i])).To(BeTrue(), "payload %d (%d bytes) came back changed (%d bytes)", i, len(payloads[i]), len(byID[id]))
			}
		})

		It("delivers the topic, metadata, the id Publish returned and the publish time", func() {
			topic := s.topic("metadata")
			c := s.MustSubscribe(topic).collect()
			md := map[string]string{
				"Content-Type": "application/json",
				"content-type": "lower case is another key",
				"trace.id":     "4bf92f3577b34da6",
				"unicode":      "ключ キー 🔑",
				"spaces":       "  leading and trailing  ",
				"lines":        "one\r\ntwo\nthree",
				"percent":      "100% %41 %zz",
				"empty":        "",
				"x_1-2.3":      "punctuation in keys",
			}
			before := time.Now()
			id := s.MustPublish(topic, []byte("with metadata"), md)
			after := time.Now()
			c.WaitCount(1, s.fx.Timeouts.Eventually, "subscriber")
			m := c.Messages()[0]
			Expect(m.GetId()).To(Equal(id), "the delivered id must be the one Publish returned")
			Expect(m.GetTopic()).To(Equal(topic))
			Expect(m.GetPayload()).To(Equal([]byte("with metadata")))
			Expect(m.GetMetadata()).To(Equal(md), "metadata must arrive unchanged, keys case-sensitive")
			Expect(m.GetPublishTime()).NotTo(BeNil(), "a delivered message must carry its publish time")
			pt := m.GetPublishTime().AsTime()
			Expect(pt).To(BeTemporally(">=", before.Add(-clockSkew)))
			Expect(pt).To(BeTemporally("<=", after.Add(clockSkew)))

			ids2 := s.MustPublishBatch([]*pubsubv1.OutgoingMessage{
				{Topic: topic, Payload: []byte("b0"), Metadata: map[string]string{"n": "0"}},
				{Topic: topic, Payload: []byte("b1"), Metadata: map[string]string{"n": "1"}},
			})
			Expect(ids2[0]).NotTo(Equal(ids2[1]), "ids must differ")
			c.WaitCount(3, s.fx.Timeouts.Eventually, "subscriber")
			for _, m := range c.Messages()[1:] {
				n := m.GetMetadata()["n"]
				Expect(m.GetPayload()).To(Equal([]byte("b"+n)), "batch message metadata belongs to its payload")
				Expect(m.GetId()).To(Equal(ids2[int(n[0]-'0')]), "batch ids are in request order")
			}
		})

		It("delivers every message to each of 5 subscribers exactly once", func() {
			topic := s.topic("fanout")
			var cs []*collector
			for range 5 {
				cs = append(cs, s.MustSubscribe(topic).collect())
			}
			var want []string
			for i := range 50 {
				want = append(want, s.MustPublish(topic, []byte(fmt.Sprintf("m%d", i)), nil))
			}
			for i, c := range cs {
				c.WaitCount(len(want), s.fx.Timeouts.Eventually, fmt.Sprintf("subscriber %d", i))
			}
			// A duplicate or stray message would arrive with the others.
			last := s.MustPublish(topic, []byte("last"), nil)
			want = append(want, last)
			for i, c := range cs {
				c.WaitCount(len(want), s.fx.Timeouts.Eventually, fmt.Sprintf("subscriber %d", i))
				expectExactlyOnce(ids(c.Messages()), want, fmt.Sprintf("subscriber %d", i))
			}
		})

		It("delivers nothing from other topics, also when topics share a prefix or contain wildcard characters, which are literal", func() {
			names := []string{"a", "a.b", "a.*", "a.>", "a.b.c", "a*", "a>", "*", ">", "a b", "ab", "a/b", "a#", "a+", "a?", "A", "a.", ".a", "a.#", "a/+"}
			cs := map[string]*collector{}
			for _, n := range names {
				cs[n] = s.MustSubscribe(s.topic(n)).collect()
			}
			own := map[string]string{}
			for _, n := range names {
				own[n] = s.MustPublish(s.topic(n), []byte(n), nil)
			}
			for _, n := range names {
				cs[n].WaitCount(1, s.fx.Timeouts.Eventually, fmt.Sprintf("subscriber of %q", n))
			}
			// A message leaking into another topic travels with the others; a
			// second round makes sure it had every chance to arrive.
			second := map[string]string{}
			for _, n := range names {
				second[n] = s.MustPublish(s.topic(n), []byte(n), nil)
			}
			for _, n := range names {
				cs[n].WaitCount(2, s.fx.Timeouts.Eventually, fmt.Sprintf("subscriber of %q", n))
			}
			for _, n := range names {
				var leaked []string
				for _, m := range cs[n].Messages() {
					if m.GetTopic() != s.topic(n) || string(m.GetPayload()) != n {
						leaked = append(leaked, fmt.Sprintf("%q (payload %q)", strings.TrimPrefix(m.GetTopic(), s.prefix), m.GetPayload()))
					}
				}
				Expect(leaked).To(BeEmpty(), "the subscriber of %q received messages of other topics", n)
				expectExactlyOnce(ids(cs[n].Messages()), []string{own[n], second[n]}, fmt.Sprintf("subscriber of %q", n))
			}
		})

		It("stops delivery when a subscriber unsubscribes, with Unsubscribed as the last event", func() {
			topic := s.topic("unsub")
			watcher := s.MustSubscribe(topic).collect()
			sub := s.MustSubscribe(topic)
			first := s.MustPublish(topic, []byte("before"), nil)
			ev, err := sub.recv(s.fx.Timeouts.Eventually)
			Expect(err).NotTo(HaveOccurred(), "waiting for the message published before unsubscribing")
			Expect(ev.GetMessage().GetId()).To(Equal(first))

			Expect(sub.unsubscribe()).To(Succeed())
			for range 100 {
				ev, err = sub.recv(s.fx.Timeouts.Eventually)
				Expect(err).NotTo(HaveOccurred(), "waiting for Unsubscribed")
				if ev.GetUnsubscribed() != nil {
					break
				}
				Expect(ev.GetMessage()).To(BeNil(), "only Unsubscribed may follow an unsubscribe here; nothing was published since")
			}
			Expect(ev.GetUnsubscribed()).NotTo(BeNil(), "Unsubscribed never came")

			var after []string
			for i := range 3 {
				after = append(after, s.MustPublish(topic, []byte(fmt.Sprintf("after%d", i)), nil))
			}
			// The watcher has them, so they were dispatched.
			watcher.WaitCount(1+len(after), s.fx.Timeouts.Eventually, "the other subscriber")
			ev, err = sub.recv(s.fx.Timeouts.Eventually)
			Expect(ev.GetMessage()).To(BeNil(), "a message was delivered after Unsubscribed")
			Expect(isEOF(err)).To(BeTrue(), "after Unsubscribed the stream must end cleanly; got %v, %v", ev, err)
			expectExactlyOnce(ids(watcher.Messages()), append([]string{first}, after...), "the other subscriber")
		})

		It("delivers 1000 messages to each of 100 concurrent subscribers", func() {
			const subscribers, messages = 100, 1000
			topic := s.topic("many")
			cs := make([]*collector, subscribers)
			var wg sync.WaitGroup
			errs := make(chan error, subscribers)
			sem := make(chan struct{}, 10)
			for i := range subscribers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					sub, err := s.subscribe(&pubsubv1.Subscription{Topic: topic})
					if err != nil {
						errs <- fmt.Errorf("subscriber %d: %w", i, err)
						return
					}
					cs[i] = sub.collect()
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				Expect(err).NotTo(HaveOccurred())
			}
			var want []string
			window, batch := s.window(8), s.batchSize()
			for len(want) < messages {
				end := min(len(want)+window, messages)
				for len(want) < end {
					n := min(batch, end-len(want))
					msgs := make([]*pubsubv1.OutgoingMessage, n)
					for j := range msgs {
						msgs[j] = &pubsubv1.OutgoingMessage{Topic: topic, Payload: []byte(fmt.Sprintf("%06d", len(want)+j))}
					}
					want = append(want, s.MustPublishBatch(msgs)...)
				}
				for i, c := range cs {
					c.WaitCount(len(want), s.fx.Timeouts.Eventually, fmt.Sprintf("subscriber %d", i))
				}
			}
			for i, c := range cs {
				expectExactlyOnce(ids(c.Messages()), want, fmt.Sprintf("subscriber %d", i))
			}
		})

		It("delivers to a new subscriber nothing published before it subscribed, also while other subscribers are live and right after a publish", func() {
			topic := s.topic("start")
			early := s.MustSubscribe(topic).collect()
			var before []string
			var batch []*pubsubv1.OutgoingMessage
			for i := range 10 {
				batch = append(batch, &pubsubv1.OutgoingMessage{Topic: topic, Payload: []byte(fmt.Sprintf("before%d", i))})
			}
			before = append(before, s.MustPublishBatch(batch)...)
			for i := range 3 {
				before = append(before, s.MustPublish(topic, []byte(fmt.Sprintf("single%d", i)), nil))
			}
			early.WaitCount(len(before), s.fx.Timeouts.Eventually, "the subscriber that was live before")
			// A moment before: Publish has returned, its delivery is not awaited.
			before = append(before, s.MustPublish(topic, []byte("just before"), nil))

			late := s.MustSubscribe(topic).collect()
			markers := []string{s.MustPublish(topic, []byte("marker1"), nil)}
			late.WaitCount(1, s.fx.Timeouts.Eventually, "the new subscriber")
			observe(quiet)
			markers = append(markers, s.MustPublish(topic, []byte("marker2"), nil))
			late.WaitCount(2, s.fx.Timeouts.Eventually, "the new subscriber")
			early.WaitCount(len(before)+2, s.fx.Timeouts.Eventually, "the subscriber that was live before")

			old := map[string]bool{}
			for _, id := range before {
				old[id] = true
			}
			var replayed []string
			for _, m := range late.Messages() {
				if old[m.GetId()] {
					replayed = append(replayed, fmt.Sprintf("%s (%q)", m.GetId(), m.GetPayload()))
				}
			}
			Expect(replayed).To(BeEmpty(), "the new subscriber received messages whose Publish had returned before it subscribed")
			expectExactlyOnce(ids(late.Messages()), markers, "the new subscriber")
			expectExactlyOnce(ids(early.Messages()), append(before, markers...), "the subscriber that was live before")
		})

		It("rejects invalid topics with InvalidArgument naming the topic, and accepts one of exactly the declared limit", func() {
			limit := s.fx.Description.GetLimits().GetMaxTopicBytes()
			Expect(limit).To(BeNumerically(">", len(s.prefix)), "Describe must declare limits.max_topic_bytes")
			long := s.prefix + strings.Repeat("t", int(limit)+1-len(s.prefix))
			for _, bad := range []string{"", long, s.topic("new\nline"), s.topic("nul\x00byte"), s.topic("tab\t"), s.topic("del\x7f")} {
				_, err := s.ps.Publish(s.ctx(), &pubsubv1.PublishRequest{Topic: bad, Payload: []byte("x")})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "topic"), "Publish to %q", bad)
				_, err = s.subscribe(&pubsubv1.Subscription{Topic: bad})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "topic"), "Subscribe to %q", bad)
				_, err = s.ps.PublishBatch(s.ctx(), &pubsubv1.PublishBatchRequest{Messages: []*pubsubv1.OutgoingMessage{{Topic: bad}}})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "topic"), "PublishBatch to %q", bad)
			}
			atLimit := s.prefix + strings.Repeat("t", int(limit)-len(s.prefix))
			c := s.MustSubscribe(atLimit).collect()
			id := s.MustPublish(atLimit, []byte("fits"), nil)
			c.WaitCount(1, s.fx.Timeouts.Eventually, "subscriber of a topic of exactly max_topic_bytes")
			Expect(c.Messages()[0].GetId()).To(Equal(id))
		})

		It("rejects a payload over the declared limit and invalid metadata with InvalidArgument, publishing nothing of the batch", func() {
			limit := s.fx.Description.GetLimits().GetMaxPayloadBytes()
			Expect(limit).To(BeNumerically(">", 0), "Describe must declare limits.max_payload_bytes")
			topic := s.topic("guarded")
			c := s.MustSubscribe(topic).collect()
			_, err := s.ps.Publish(s.ctx(), &pubsubv1.PublishRequest{Topic: topic, Payload: make([]byte, limit+1)})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "payload"))
			for _, md := range []map[string]string{{"": "empty key"}, {"bad key": "space"}, {"colon:key": "x"}, {strings.Repeat("k", 129): "long key"}} {
				_, err = s.ps.Publish(s.ctx(), &pubsubv1.PublishRequest{Topic: topic, Payload: []byte("x"), Metadata: md})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "metadata"), "metadata %q", md)
			}
			_, err = s.ps.PublishBatch(s.ctx(), &pubsubv1.PublishBatchRequest{Messages: []*pubsubv1.OutgoingMessage{
				{Topic: topic, Payload: []byte("valid, but its batch is not")},
				{Topic: topic, Payload: make([]byte, limit+1)},
			}})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "payload"), "PublishBatch with one oversized payload")
			id := s.MustPublish(topic, []byte("marker"), nil)
			c.WaitCount(1, s.fx.Timeouts.Eventually, "subscriber")
			Expect(ids(c.Messages())).To(Equal([]string{id}), "rejected messages must not be delivered")
		})
	})
}
