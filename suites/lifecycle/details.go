package lifecycle

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/metadata"

	"github.com/prism-suite/prism/harness/plugin"
	"github.com/prism-suite/prism/proto/capability"
	"github.com/prism-suite/prism/proto/detail"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// describeDetails registers the specs of the standard health details
// (proto/PROTOCOL.md §5), which hosts and the other suites read: each runs on
// the fresh plugin process of the lifecycle BeforeEach, so its counts start
// from the plugin's own calls only. each returns that spec's fixture,
// process and valid Initialize request.
func describeDetails(each func() (*fixture.Fixture, *plugin.Process, *lifecyclev1.InitializeRequest)) {
	It("reports the standard health details and counts data calls that carried authorization metadata", func() {
		fx, proc, init := each()
		_, err := proc.Setup(fx.Ctx(), init)
		Expect(err).NotTo(HaveOccurred())
		seen := func() int64 { return standardDetails(fx, proc)[detail.AuthorizationHeadersSeen] }
		before := seen()

		md := metadata.Pairs("authorization", "Bearer lifecycle-suite-witness")
		Expect(dataCallMD(fx, proc, md)).To(Succeed(), "a data call with authorization metadata")
		Expect(seen()).To(Equal(before+1),
			"%s after one data call with authorization metadata (before: %d)", detail.AuthorizationHeadersSeen, before)
		Expect(dataCallMD(fx, proc, nil)).To(Succeed(), "a data call without authorization metadata")
		Expect(seen()).To(Equal(before+1),
			"%s after a data call without authorization metadata: it counts only calls that carry it", detail.AuthorizationHeadersSeen)
	})

	It("reports an open subscription in the standard health details until it is cancelled", func() {
		fx, proc, init := each()
		if !fx.Declared().Has(capability.PubSubBasic) {
			Skip("pubsub.basic is not declared by this plugin, so no call stays open for the counts to show")
		}
		_, err := proc.Setup(fx.Ctx(), init)
		Expect(err).NotTo(HaveOccurred())
		counts := func() [2]int64 {
			d := standardDetails(fx, proc)
			return [2]int64{d[detail.InflightCalls], d[detail.OpenStreams]}
		}
		Expect(counts()).To(Equal([2]int64{0, 0}), "[%s %s] of a plugin without calls", detail.InflightCalls, detail.OpenStreams)

		sctx, cancel := context.WithTimeout(context.Background(), fx.Timeouts.Call+fx.Timeouts.Eventually)
		defer cancel()
		stream, err := pubsubv1.NewPubSubClient(proc.Conn).Subscribe(sctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
			Subscription: &pubsubv1.Subscription{Topic: fx.Prefix() + "details"}}})).To(Succeed())
		ev, err := stream.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetSubscribed()).NotTo(BeNil(), "the first event must be Subscribed")
		Expect(counts()).To(Equal([2]int64{1, 1}), "[%s %s] with one open subscription", detail.InflightCalls, detail.OpenStreams)

		cancel()
		Eventually(counts).WithTimeout(fx.Timeouts.Eventually).WithPolling(20*time.Millisecond).
			Should(Equal([2]int64{0, 0}), "[%s %s] after the subscription was cancelled", detail.InflightCalls, detail.OpenStreams)
	})
}

// standardDetails reads the plugin's standard health details, failing the
// spec when one is missing or not a count.
func standardDetails(fx *fixture.Fixture, proc *plugin.Process) map[string]int64 {
	GinkgoHelper()
	h, err := proc.Lifecycle.HealthCheck(fx.Ctx(), &lifecyclev1.HealthCheckRequest{})
	Expect(err).NotTo(HaveOccurred(), "HealthCheck")
	out := map[string]int64{}
	for _, k := range detail.Standard() {
		n, ok, err := detail.Get(h.GetDetails(), k)
		Expect(ok).To(BeTrue(), "HealthCheck details %v lack the standard detail %s (proto/PROTOCOL.md §5)", h.GetDetails(), k)
		Expect(err).NotTo(HaveOccurred())
		out[k] = n
	}
	return out
}

// dataCallMD makes one successful data call with md as its metadata: a
// KeyValue Set, else a PubSub Publish.
func dataCallMD(fx *fixture.Fixture, proc *plugin.Process, md metadata.MD) error {
	ctx := metadata.NewOutgoingContext(fx.Ctx(), md)
	if fx.Declared().Has(capability.KeyValueBasic) {
		_, err := keyvaluev1.NewKeyValueClient(proc.Conn).Set(ctx, &keyvaluev1.SetRequest{Key: fx.Prefix() + "details", Value: []byte("v")})
		return err
	}
	if fx.Declared().Has(capability.PubSubBasic) {
		_, err := pubsubv1.NewPubSubClient(proc.Conn).Publish(ctx, &pubsubv1.PublishRequest{Topic: fx.Prefix() + "details"})
		return err
	}
	Skip("the plugin declares no data API the lifecycle specs know (keyvalue.basic, pubsub.basic)")
	return nil
}
