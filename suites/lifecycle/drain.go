package lifecycle

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/plugin"
	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// The stuck subscriber: a client that stops reading after Subscribed, on a
// connection of its own whose HTTP/2 windows are fixed at their minimum
// (64 KiB, which also turns off window growth). Once more than the windows
// and the plugin's send buffers hold has been published to it, the plugin's
// handler of that subscription cannot send and cannot end by itself: it is a
// call in flight that only the client can finish.
const (
	stuckWindow       = 64 << 10
	stuckPayloadBytes = 32 << 10
	stuckTotalBytes   = 2 << 20 // far beyond what windows and send buffers hold (a few hundred KiB)
)

// stuck is a started plugin process with one subscription stuck as above.
type stuck struct {
	fx      *fixture.Fixture
	proc    *plugin.Process
	stream  pubsubv1.PubSub_SubscribeClient
	cancel  context.CancelFunc // ends the stuck subscription from the client
	sent    int                // messages published to it
	publish time.Duration      // the slowest of those publishes
}

// stickSubscription launches and starts a plugin, opens the stuck
// subscription and publishes to it until its handler cannot send. It skips
// when the plugin's declared subscription buffer could not hold what is
// published without dropping messages or blocking the publisher.
func stickSubscription(fx *fixture.Fixture) *stuck {
	GinkgoHelper()
	if !fx.Declared().Has(capability.PubSubBasic) {
		Skip("pubsub.basic is not declared by this plugin: the call held in flight is a subscription")
	}
	size := int64(stuckPayloadBytes)
	if m := fx.Description.GetLimits().GetMaxPayloadBytes(); m > 0 && m < size {
		size = m
	}
	n := int((stuckTotalBytes + size - 1) / size)
	if p := fx.Description.GetSlowConsumer(); p.GetBufferMessages() > 0 && p.GetBufferMessages() < int64(2*n) ||
		p.GetBufferBytes() > 0 && p.GetBufferBytes() < 2*int64(n)*size {
		Skip(fmt.Sprintf("the plugin's subscription buffer (%d messages, %d bytes) cannot hold %d messages of %d bytes, which the spec publishes to a subscriber that does not read",
			p.GetBufferMessages(), p.GetBufferBytes(), n, size))
	}
	lctx, lcancel := context.WithTimeout(context.Background(), fx.Timeouts.Handshake+fx.Timeouts.Call)
	defer lcancel()
	proc, init, err := fx.Launch(lctx)
	DeferCleanup(func() { _ = proc.Stop(context.Background()) })
	Expect(err).NotTo(HaveOccurred(), "launch the plugin (handshake and health)")
	_, err = proc.Setup(lctx, init)
	Expect(err).NotTo(HaveOccurred(), "Initialize and Start")

	conn, err := grpc.NewClient(proc.Handshake.Target(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(stuckWindow), grpc.WithInitialConnWindowSize(stuckWindow),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(plugin.MaxMessageBytes)))
	fixture.Harness(err, "dial the plugin at %s", proc.Handshake.Target())
	DeferCleanup(conn.Close)
	// The subscription lives until the spec ends it, at most this long.
	sctx, cancel := context.WithTimeout(context.Background(), 2*(fx.Timeouts.Stop+fx.Timeouts.Call))
	DeferCleanup(cancel)
	topic := fx.Prefix() + "stuck"
	stream, err := pubsubv1.NewPubSubClient(conn).Subscribe(sctx)
	Expect(err).NotTo(HaveOccurred(), "Subscribe")
	Expect(stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
		Subscription: &pubsubv1.Subscription{Topic: topic}}})).To(Succeed())
	ev, err := stream.Recv()
	Expect(err).NotTo(HaveOccurred(), "the first event of the subscription")
	Expect(ev.GetSubscribed()).NotTo(BeNil(), "the first event must be Subscribed")

	s := &stuck{fx: fx, proc: proc, stream: stream, cancel: cancel}
	ps := pubsubv1.NewPubSubClient(proc.Conn)
	payload := make([]byte, size)
	for i := range n {
		start := time.Now()
		_, err := ps.Publish(fx.Ctx(), &pubsubv1.PublishRequest{Topic: topic, Payload: payload})
		Expect(err).NotTo(HaveOccurred(), "publish %d of %d to the subscriber that does not read", i+1, n)
		s.publish = max(s.publish, time.Since(start))
	}
	s.sent = n
	return s
}

// drain calls Drain with deadline in the background; the result arrives on
// the returned channel.
func (s *stuck) drain(deadline time.Duration) (<-chan drained, time.Time) {
	out := make(chan drained, 1)
	start := time.Now()
	go func() {
		defer GinkgoRecover()
		ctx, cancel := context.WithTimeout(context.Background(), deadline+s.fx.Timeouts.Call)
		defer cancel()
		resp, err := s.proc.Lifecycle.Drain(ctx, &lifecyclev1.DrainRequest{Deadline: durationpb.New(deadline)})
		out <- drained{resp: resp, err: err, at: time.Now()}
	}()
	return out, start
}

type drained struct {
	resp *lifecyclev1.DrainResponse
	err  error
	at   time.Time
}

// expectRefusing waits until a new data call is refused with Unavailable,
// as it must be once Drain has begun.
func (s *stuck) expectRefusing(within time.Duration) {
	GinkgoHelper()
	ps := pubsubv1.NewPubSubClient(s.proc.Conn)
	Eventually(func() error {
		_, err := ps.Publish(s.fx.Ctx(), &pubsubv1.PublishRequest{Topic: s.fx.Prefix() + "during-drain", Payload: []byte("x")})
		return err
	}).WithTimeout(within).WithPolling(10*time.Millisecond).Should(fixture.HaveCode(codes.Unavailable),
		"a new data call while Drain waits")
}

// readAll reads the stuck subscription to its end and returns the messages
// it delivered and the error it ended with.
func (s *stuck) readAll() (int, error) {
	n := 0
	for {
		ev, err := s.stream.Recv()
		if err != nil {
			return n, err
		}
		if ev.GetMessage() != nil {
			n++
		}
	}
}

// expectEndedEarly checks a Drain that answered before its deadline with
// nothing in flight: the protocol lets a plugin end a subscription at Drain,
// but then it must really have ended it, so the client cannot get all that
// was published to it afterwards (the windows hold a small part of it).
func (s *stuck) expectEndedEarly() {
	GinkgoHelper()
	got, err := s.readAll()
	Expect(got).To(BeNumerically("<", s.sent),
		"Drain answered before its deadline with in_flight 0, yet the subscription went on to deliver all %d messages published to it: it was still in flight when Drain answered",
		s.sent)
	Expect(status.Code(err)).To(Equal(codes.Unavailable), "how the subscription ended: %v", err)
}

// expectExit stops the plugin and closes its stdin: it must answer Stop and
// exit within the stop deadline.
func (s *stuck) expectExit() {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Stop)
	defer cancel()
	_, err := s.proc.Lifecycle.Stop(ctx, &lifecyclev1.StopRequest{})
	Expect(err).NotTo(HaveOccurred(), "Stop after Drain")
	Expect(s.proc.CloseStdin()).To(Succeed())
	Eventually(s.proc.Exited()).WithTimeout(s.fx.Timeouts.Stop).Should(BeClosed(),
		"the plugin must exit within %v of its host closing stdin", s.fx.Timeouts.Stop)
}

// describeDrainInFlight registers the specs of Drain while a call is in
// flight that the plugin cannot finish by itself.
func describeDrainInFlight(fx func() *fixture.Fixture) {
	Context("Drain with a call in flight", func() {
		It("waits for a subscription whose client stopped reading until Drain's deadline, refusing new calls meanwhile, and reports it in flight", func() {
			f := fx()
			s := stickSubscription(f)
			// Long enough to tell waiting from answering at once on a loaded
			// machine: many times the slowest publish, at least half a second.
			deadline := min(max(500*time.Millisecond, 20*s.publish), f.Timeouts.Stop)
			done, start := s.drain(deadline)
			s.expectRefusing(f.Timeouts.Call)
			var d drained
			Eventually(done).WithTimeout(deadline+f.Timeouts.Call).Should(Receive(&d),
				"Drain with a deadline of %v must answer by then, whatever is in flight", deadline)
			Expect(d.err).NotTo(HaveOccurred(), "Drain")
			took := d.at.Sub(start)
			AddReportEntry("Drain", ReportEntryVisibilityFailureOrVerbose, fmt.Sprintf("deadline %v, answered after %v, in_flight %d", deadline, took, d.resp.GetInFlight()))
			if took < deadline {
				Expect(d.resp.GetInFlight()).To(BeZero(), "Drain answered before its deadline (after %v of %v) with calls in flight", took, deadline)
				s.expectEndedEarly()
			} else {
				Expect(d.resp.GetInFlight()).To(BeNumerically(">=", 1), "in_flight when Drain's deadline passed with the subscription stuck")
				Expect(took).To(BeNumerically("<", deadline+f.Timeouts.Call/2), "Drain answered long after its deadline of %v", deadline)
				s.cancel()
			}
			s.expectExit()
		})

		It("returns as soon as the subscription it waits for ends, long before its deadline, and Stop then exits", func() {
			f := fx()
			s := stickSubscription(f)
			// While the subscription is stuck, Drain must keep waiting: watch
			// it for many times the slowest publish, well inside its deadline
			// (on a loaded machine the watch grows, and the deadline with it,
			// so that a Drain answering at its deadline is never taken for
			// one that did not wait).
			watch := max(200*time.Millisecond, 10*s.publish)
			deadline := max(f.Timeouts.Stop, 4*watch)
			done, _ := s.drain(deadline)
			s.expectRefusing(f.Timeouts.Call)
			select {
			case d := <-done:
				Expect(d.err).NotTo(HaveOccurred(), "Drain")
				Expect(d.resp.GetInFlight()).To(BeZero(), "Drain answered before its deadline with calls in flight")
				s.expectEndedEarly()
				s.expectExit()
				return
			case <-time.After(watch): // bounded observation, not a wait for readiness
			}
			ended := time.Now()
			s.cancel() // the client ends the stuck call
			var d drained
			Eventually(done).WithTimeout(deadline).Should(Receive(&d),
				"Drain must answer once the call it waits for has ended")
			Expect(d.err).NotTo(HaveOccurred(), "Drain")
			after := d.at.Sub(ended)
			AddReportEntry("Drain", ReportEntryVisibilityFailureOrVerbose, fmt.Sprintf("deadline %v, answered %v after the call ended, in_flight %d", deadline, after, d.resp.GetInFlight()))
			Expect(d.resp.GetInFlight()).To(BeZero(), "in_flight after the only call in flight ended")
			Expect(after).To(BeNumerically("<", deadline/2), "Drain answered %v after the call it waited for ended", after)
			s.expectExit()
		})

		It("waits for a call stuck on a paused backend until that call's deadline passes, refusing new calls meanwhile, then answers and Stop succeeds", Label("fault:pause"), func() {
			f := fx()
			if !f.Declared().Has(capability.KeyValueBasic) {
				Skip("keyvalue.basic is not declared by this plugin: the call stuck on the backend is a KeyValue Get")
			}
			if f.Backend == nil {
				Skip("the plugin has no backend instance to pause; the specs with a stuck subscription hold a call in flight instead")
			}
			if _, ok := f.Backend.(backend.Pauser); !ok {
				Skip(fmt.Sprintf("the %s backend via %s cannot be paused", f.Backend.Info().Kind, f.Backend.Info().Provider))
			}
			p := f.Private()
			if p.Lifecycle == nil {
				Skip("the spec's plugin has no lifecycle client (it is reached through a proxy)")
			}
			kv := keyvaluev1.NewKeyValueClient(p.Target.Conn)
			k := f.Prefix() + "frozen"
			_, err := kv.Set(f.Ctx(), &keyvaluev1.SetRequest{Key: k, Value: []byte("v")})
			Expect(err).NotTo(HaveOccurred(), "Set before the pause")

			p.Pause()
			// The stuck call's deadline, and Drain's: Drain's is far longer,
			// so answering when the call ends is told apart from answering
			// at its own deadline.
			callDeadline := time.Second
			drainDeadline := callDeadline + f.Timeouts.Stop
			type ended struct {
				code codes.Code
				at   time.Time
			}
			call := make(chan ended, 1)
			callStart := time.Now()
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
				defer cancel()
				_, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: k})
				call <- ended{status.Code(err), time.Now()}
			}()
			// A call on the same connection answered after the Get was sent:
			// the plugin has read the Get before Drain is even sent.
			_, err = p.Lifecycle.Describe(f.Ctx(), &lifecyclev1.DescribeRequest{})
			Expect(err).NotTo(HaveOccurred(), "Describe while the backend is paused")

			done := make(chan drained, 1)
			go func() {
				defer GinkgoRecover()
				ctx, cancel := context.WithTimeout(context.Background(), drainDeadline+f.Timeouts.Call)
				defer cancel()
				resp, err := p.Lifecycle.Drain(ctx, &lifecyclev1.DrainRequest{Deadline: durationpb.New(drainDeadline)})
				done <- drained{resp: resp, err: err, at: time.Now()}
			}()
			Eventually(func() error {
				// Short: a probe that got in before Drain is stuck too, and
				// must end long before the call under test.
				ctx, cancel := context.WithTimeout(context.Background(), callDeadline/10)
				defer cancel()
				_, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: k})
				return err
			}).WithTimeout(f.Timeouts.Call).WithPolling(10*time.Millisecond).Should(fixture.HaveCode(codes.Unavailable),
				"a new data call while Drain waits")

			var c ended
			Eventually(call).WithTimeout(callDeadline+f.Timeouts.Call).Should(Receive(&c), "the stuck call must end by its deadline")
			var d drained
			Eventually(done).WithTimeout(drainDeadline+f.Timeouts.Call).Should(Receive(&d), "Drain must answer")
			Expect(d.err).NotTo(HaveOccurred(), "Drain")
			AddReportEntry("Drain", ReportEntryVisibilityFailureOrVerbose, fmt.Sprintf("stuck call %s after %v; Drain answered after %v (deadline %v), in_flight %d",
				c.code, c.at.Sub(callStart), d.at.Sub(callStart), drainDeadline, d.resp.GetInFlight()))
			Expect(d.resp.GetInFlight()).To(BeZero(), "in_flight once the only call in flight ended")
			if c.code == codes.Unavailable {
				// The Get reached the plugin's handler only after Drain began
				// (an extremely loaded machine): it was refused, as it must be.
				AddReportEntry("inconclusive", ReportEntryVisibilityAlways, "the stuck call was refused: it was admitted after Drain began")
			} else {
				Expect(c.code).To(Equal(codes.DeadlineExceeded), "the call stuck on the paused backend")
				Expect(d.at.Sub(callStart)).To(BeNumerically(">=", callDeadline),
					"Drain answered before the call it had to wait for ended")
				Expect(d.at.Sub(callStart)).To(BeNumerically("<", callDeadline+f.Timeouts.Stop/2),
					"Drain answered long after the call it waited for ended (its own deadline was %v)", drainDeadline)
			}
			p.Unpause()
			ctx, cancel := context.WithTimeout(context.Background(), f.Timeouts.Stop)
			defer cancel()
			_, err = p.Lifecycle.Stop(ctx, &lifecyclev1.StopRequest{})
			Expect(err).NotTo(HaveOccurred(), "Stop after Drain")
		})
	})
}
