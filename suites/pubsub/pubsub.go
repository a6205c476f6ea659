// Package pubsub holds the Ginkgo specs that certify the PubSub capabilities:
// pubsub.basic, pubsub.ordered, pubsub.queue and pubsub.durable.
//
// [Register] only registers specs; it never calls RunSpecs, so the specs can
// run from prism-accept or nested inside a plugin author's own suite. Every
// spec carries its capability as a Ginkgo label and is skipped, with that
// reason, when the plugin does not declare it. The fixture is read when each
// spec runs, not at registration.
//
// Every spec uses topics under its own prefix ([fixture.Fixture.Prefix]),
// closes the subscriptions it opened and deletes the durable consumers it
// made. Readiness is never waited for with a sleep: a subscription is live at
// its Subscribed event, and deliveries are awaited with Eventually bounded by
// the fixture's Eventually timeout. The only timed waits are observation
// windows in which something must not happen (a redelivery of an
// acknowledged message, a message published before a subscription started),
// each a small multiple of the ack deadline the spec chose or [quiet] after a
// marker message that must arrive has arrived. Every loop is bounded in count and time; the suite takes well under
// a minute per plugin.
package pubsub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/proto/capability"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// Labels of the PubSub capabilities, and of the harness ability the restart
// spec needs.
var (
	basic   = Label(string(capability.PubSubBasic))
	ordered = Label(string(capability.PubSubOrdered))
	queue   = Label(string(capability.PubSubQueue))
	durable = Label(string(capability.PubSubDurable))
	outage  = Label("fault:outage")
)

// Register adds the PubSub specs to the Ginkgo tree under "PubSub".
// Call it at the top level of a test file or inside a container.
func Register(p fixture.Provider) bool {
	return Describe("PubSub", func() {
		var s *session
		BeforeEach(func() {
			fx := p()
			fixture.Gate(fx)
			s = newSession(fx)
			DeferCleanup(s.cleanup)
		})
		sess := func() *session { return s }
		describeBasic(sess)
		describeSlowConsumer(sess)
		describeOrdered(sess)
		describeQueue(sess)
		describeDurable(sess)
		describeCluster(sess)
		describeMutationGaps(sess)
	})
}

// session is one spec's view: the fixture, a client, the spec's topic
// prefix, and what it opened (subscriptions, durable consumers), closed and
// deleted when the spec ends.
type session struct {
	fx     *fixture.Fixture
	ps     pubsubv1.PubSubClient
	prefix string

	mu       sync.Mutex
	subs     []*subscription
	durables [][2]string // topic, durable
}

func newSession(fx *fixture.Fixture) *session {
	return &session{fx: fx, ps: fx.Target.PubSub(), prefix: fx.Prefix()}
}

// on returns a session like s on the spec's own backend and plugin p (see
// [fixture.Fixture.Private]), with the same prefix; what it opens is closed
// when the spec ends, before p is stopped.
func (s *session) on(p *fixture.Private) *session {
	ps := &session{fx: s.fx, ps: p.Target.PubSub(), prefix: s.prefix}
	DeferCleanup(ps.cleanup)
	return ps
}

// topic returns the spec-unique topic for name.
func (s *session) topic(name string) string { return s.prefix + name }

// ctx returns a context bounded by the call timeout.
func (s *session) ctx() context.Context { return s.fx.Ctx() }

// cleanup closes every subscription and deletes every durable consumer the
// spec made.
func (s *session) cleanup() {
	s.mu.Lock()
	subs, durables := s.subs, s.durables
	s.subs, s.durables = nil, nil
	s.mu.Unlock()
	for i := len(subs) - 1; i >= 0; i-- {
		subs[i].cancel()
	}
	for i := len(durables) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Call)
		_, _ = s.ps.DeleteDurable(ctx, &pubsubv1.DeleteDurableRequest{Topic: durables[i][0], Durable: durables[i][1]})
		cancel()
	}
}

// MustPublish publishes one message and returns its id.
func (s *session) MustPublish(topic string, payload []byte, md map[string]string) string {
	GinkgoHelper()
	resp, err := s.ps.Publish(s.ctx(), &pubsubv1.PublishRequest{Topic: topic, Payload: payload, Metadata: md})
	Expect(err).NotTo(HaveOccurred(), "Publish to %q", topic)
	Expect(resp.GetId()).NotTo(BeEmpty(), "Publish must return the message id")
	return resp.GetId()
}

// MustPublishBatch publishes msgs with one PublishBatch and returns the ids.
func (s *session) MustPublishBatch(msgs []*pubsubv1.OutgoingMessage) []string {
	GinkgoHelper()
	resp, err := s.ps.PublishBatch(s.ctx(), &pubsubv1.PublishBatchRequest{Messages: msgs})
	Expect(err).NotTo(HaveOccurred(), "PublishBatch of %d messages", len(msgs))
	Expect(resp.GetIds()).To(HaveLen(len(msgs)), "PublishBatch must return one id per message")
	return resp.GetIds()
}

// batchSize is the largest batch the suite sends.
func (s *session) batchSize() int {
	n := int(s.fx.Description.GetLimits().GetMaxBatchSize())
	if n <= 0 || n > 100 {
		n = 100
	}
	return n
}

// window is how many messages the suite publishes before it waits for
// readers to catch up, so a subscriber that reads promptly never finds its
// buffer full (a full buffer is the slow-consumer spec's business).
func (s *session) window(payloadBytes int) int {
	sc := s.fx.Description.GetSlowConsumer()
	n := int64(500)
	if m := sc.GetBufferMessages(); m > 0 {
		n = min(n, m/2)
	}
	if b := sc.GetBufferBytes(); b > 0 {
		n = min(n, b/2/int64(payloadBytes+256))
	}
	return int(max(n, 1))
}

// subscription is one open Subscribe stream.
type subscription struct {
	topic  string
	stream pubsubv1.PubSub_SubscribeClient
	cancel context.CancelFunc
	call   time.Duration
}

// subscribe opens a subscription and waits for its Subscribed event.
func (s *session) subscribe(sub *pubsubv1.Subscription) (*subscription, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := s.ps.Subscribe(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	out := &subscription{topic: sub.GetTopic(), stream: stream, cancel: cancel, call: s.fx.Timeouts.Call}
	s.mu.Lock()
	s.subs = append(s.subs, out)
	s.mu.Unlock()
	if sub.GetDurable() != "" {
		s.mu.Lock()
		s.durables = append(s.durables, [2]string{sub.GetTopic(), sub.GetDurable()})
		s.mu.Unlock()
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{Subscription: sub}}); err != nil {
		cancel()
		_, err = stream.Recv() // the status that ended the stream
		return nil, err
	}
	ev, err := out.recv(s.fx.Timeouts.Call)
	if err != nil {
		cancel()
		return nil, err
	}
	if ev.GetSubscribed() == nil {
		cancel()
		return nil, fmt.Errorf("the first event of a subscription must be Subscribed, got %v", ev)
	}
	return out, nil
}

// MustSubscribe subscribes to topic and waits until the subscription is live.
func (s *session) MustSubscribe(topic string) *subscription {
	GinkgoHelper()
	sub, err := s.subscribe(&pubsubv1.Subscription{Topic: topic})
	Expect(err).NotTo(HaveOccurred(), "Subscribe to %q", topic)
	return sub
}

// MustSubscribeQueue subscribes to topic as a member of group.
func (s *session) MustSubscribeQueue(topic, group string) *subscription {
	GinkgoHelper()
	sub, err := s.subscribe(&pubsubv1.Subscription{Topic: topic, QueueGroup: group})
	Expect(err).NotTo(HaveOccurred(), "Subscribe to %q in queue group %q", topic, group)
	return sub
}

// subscribeDurable subscribes the durable consumer name of topic.
func (s *session) subscribeDurable(topic, name string, ackWait time.Duration) (*subscription, error) {
	return s.subscribe(&pubsubv1.Subscription{Topic: topic, Durable: name, AckWait: durationpb.New(ackWait)})
}

// recv returns the next event within d. On timeout it cancels the stream.
func (sub *subscription) recv(d time.Duration) (*pubsubv1.SubscribeEvent, error) {
	type result struct {
		ev  *pubsubv1.SubscribeEvent
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ev, err := sub.stream.Recv()
		ch <- result{ev, err}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.ev, r.err
	case <-t.C:
		sub.cancel()
		<-ch
		return nil, fmt.Errorf("no event within %v", d)
	}
}

// unsubscribe sends an unsubscribe request.
func (sub *subscription) unsubscribe() error {
	return sub.stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Unsubscribe{Unsubscribe: &pubsubv1.Unsubscribe{}}})
}

// collector reads a subscription's events in the background.
type collector struct {
	sub *subscription

	mu           sync.Mutex
	msgs         []*pubsubv1.Message
	dropped      int64
	unsubscribed bool
	afterUnsub   int   // messages that came after Unsubscribed
	end          error // how the stream ended (io.EOF: cleanly)
	done         chan struct{}
}

// collect starts reading sub's events in the background.
func (sub *subscription) collect() *collector {
	c := &collector{sub: sub, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			ev, err := sub.stream.Recv()
			c.mu.Lock()
			if err != nil {
				c.end = err
				c.mu.Unlock()
				return
			}
			switch {
			case ev.GetMessage() != nil:
				c.msgs = append(c.msgs, ev.GetMessage())
				if c.unsubscribed {
					c.afterUnsub++
				}
			case ev.GetDropped() != nil:
				c.dropped += ev.GetDropped().GetCount()
			case ev.GetUnsubscribed() != nil:
				c.unsubscribed = true
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// Count returns how many messages have arrived.
func (c *collector) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// Messages returns a copy of the messages that have arrived.
func (c *collector) Messages() []*pubsubv1.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*pubsubv1.Message(nil), c.msgs...)
}

// Dropped returns the sum of the Dropped events so far.
func (c *collector) Dropped() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// ended returns how the stream ended, or nil while it is open.
func (c *collector) ended() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.end
}

// WaitCount waits until at least n messages have arrived, failing early if
// the stream ends.
func (c *collector) WaitCount(n int, timeout time.Duration, what string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		c.mu.Lock()
		got, end, dropped := len(c.msgs), c.end, c.dropped
		c.mu.Unlock()
		g.Expect(end).To(BeNil(), "%s: the subscription ended after %d of %d messages", what, got, n)
		g.Expect(dropped).To(BeZero(), "%s: the plugin dropped %d messages for a subscriber that reads promptly", what, dropped)
		g.Expect(got).To(BeNumerically(">=", n), "%s: messages received", what)
	}).WithTimeout(timeout).WithPolling(5 * time.Millisecond).Should(Succeed())
}

// ids returns the ids of msgs.
func ids(msgs []*pubsubv1.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.GetId()
	}
	return out
}

// expectExactlyOnce asserts that got holds every id of want exactly once and
// nothing else.
func expectExactlyOnce(got, want []string, what string) {
	GinkgoHelper()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	var missing, dup, extra []string
	wanted := map[string]bool{}
	for _, id := range want {
		wanted[id] = true
		switch seen[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			dup = append(dup, fmt.Sprintf("%s (×%d)", id, seen[id]))
		}
	}
	for id := range seen {
		if !wanted[id] {
			extra = append(extra, id)
		}
	}
	Expect(dup).To(BeEmpty(), "%s: messages delivered more than once", what)
	Expect(extra).To(BeEmpty(), "%s: messages delivered that were not published to this topic", what)
	Expect(missing).To(BeEmpty(), "%s: %d of %d messages never delivered", what, len(missing), len(want))
}

// isEOF reports whether err is the clean end of a stream.
func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// declared reports whether the plugin declared c.
func (s *session) declared(c capability.Name) bool { return s.fx.Declared().Has(c) }

// gotUnsubscribed reports whether the Unsubscribed event has arrived, and
// how many messages came after it.
func (c *collector) gotUnsubscribed() (bool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unsubscribed, c.afterUnsub
}

// leave unsubscribes c's subscription and waits for its Unsubscribed event.
func (c *collector) leave(timeout time.Duration, what string) {
	GinkgoHelper()
	Expect(c.sub.unsubscribe()).To(Succeed(), "%s: unsubscribe", what)
	Eventually(func(g Gomega) {
		if done, _ := c.gotUnsubscribed(); done {
			return
		}
		g.Expect(c.ended()).To(BeNil(), "%s: the stream ended without Unsubscribed", what)
		g.Expect(c.gotUnsubscribed()).To(BeTrue(), "%s: Unsubscribed has not arrived", what)
	}).WithTimeout(timeout).WithPolling(5 * time.Millisecond).Should(Succeed())
}

// quiet is how long a spec keeps watching, after a marker message that must
// arrive has arrived, for messages that must not arrive. Deliveries of one
// subscription keep their order in every reference plugin, so a message that
// would wrongly arrive is normally already there; the window covers plugins
// that deliver through several paths.
const quiet = 300 * time.Millisecond
