package auth

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/proto/capability"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// expiring returns a token that the proxy accepts now and refuses from the
// returned instant on: its exp is in the past by a little less than the
// clock skew, so that it runs out within a few seconds whatever the skew
// (exp + clock_skew is the last instant a token is valid).
func (s *session) expiring() (string, time.Time) {
	GinkgoHelper()
	sec, margin := s.boundary()
	exp := sec.Add(-s.a.ClockSkew + margin)
	c := s.claims().With("iat", unix(exp.Add(-time.Hour))).With("nbf", unix(exp.Add(-time.Hour))).With("exp", exp.Unix())
	return s.mint(c), exp.Add(s.a.ClockSkew)
}

func describeExpiry(s func() *session) {
	Describe("Time moving on", jwtLabel, func() {
		BeforeEach(func() { s().needMinter() })
		It("refuses a token on the next unary call once it expires, though it was accepted (and could be cached) before", func() {
			// Writes: a unary call whatever the plugin declares (a read is a
			// subscription on a PubSub-only plugin).
			tok, end := s().expiring()
			for i := range 2 {
				Expect(s().call(s().a.Namespace, Write, bearer(tok)).err).NotTo(HaveOccurred(),
					"call %d with the token before it expires at %v", i+1, end.Format(time.RFC3339))
			}
			want := s().baseline()
			Eventually(func() error { return s().call(s().a.Namespace, Write, bearer(tok)).err }).
				WithTimeout(time.Until(end)+s().fx.Timeouts.Call).WithPolling(100*time.Millisecond).
				Should(fixture.HaveCode(codes.Unauthenticated), "the token once exp + clock_skew (%v) has passed", end.Format(time.RFC3339))
			Expect(time.Now()).NotTo(BeTemporally("<", end), "the token was refused before it expired")
			r := s().call(s().a.Namespace, Write, bearer(tok))
			Expect(r.err).To(fixture.HaveCode(codes.Unauthenticated), "the expired token again: a refusal stays a refusal")
			Expect(status.Convert(r.err).Message()).To(Equal(want), "the expired token's message must be the generic one")
		})

		It("ends an open subscription with Unauthenticated when its token expires", func() {
			if !s().fx.Declared().Has(capability.PubSubBasic) {
				Skip("pubsub.basic is not declared by this plugin, so there is no stream through the proxy to keep open")
			}
			tok, end := s().expiring()
			topic := s().prefix + "expiry"
			ctx, cancel := context.WithTimeout(context.Background(), time.Until(end)+s().fx.Timeouts.Call)
			defer cancel()
			sctx := metadata.AppendToOutgoingContext(ctx, "authorization", bearer(tok))
			stream, err := s().a.Target(s().a.Namespace).PubSub().Subscribe(sctx)
			Expect(err).NotTo(HaveOccurred(), "open Subscribe")
			Expect(stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
				Subscription: &pubsubv1.Subscription{Topic: topic}}})).To(Succeed(), "send the subscription")
			ev, err := stream.Recv()
			Expect(err).NotTo(HaveOccurred(), "the Subscribed event, with the token valid")
			Expect(ev.GetSubscribed()).NotTo(BeNil(), "the first event must be Subscribed, got %v", ev)

			By("delivering a message published while the token is valid")
			pctx, pcancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", bearer(s().good())), s().fx.Timeouts.Call)
			_, err = s().a.Target(s().a.Namespace).PubSub().Publish(pctx, &pubsubv1.PublishRequest{Topic: topic, Payload: []byte("before")})
			pcancel()
			Expect(err).NotTo(HaveOccurred(), "publish with a good token")
			ev, err = stream.Recv()
			Expect(err).NotTo(HaveOccurred(), "the message published while the subscription's token is valid")
			Expect(ev.GetMessage().GetPayload()).To(Equal([]byte("before")), "the event after the publish, got %v", ev)

			By("waiting for the stream to end when the token expires")
			for {
				ev, err = stream.Recv()
				if err != nil {
					break
				}
			}
			Expect(err).To(fixture.HaveCode(codes.Unauthenticated),
				"the subscription's end after its token expired at %v (exp + clock_skew)", end.Format(time.RFC3339))
			Expect(time.Now()).NotTo(BeTemporally("<", end), "the stream ended before its token expired")
		})
	})
}
