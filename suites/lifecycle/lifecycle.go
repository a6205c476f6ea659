// Package lifecycle holds the specs every Prism plugin must pass, whatever it
// declares: the handshake, gRPC health, Describe, Initialize validation, the
// state machine, Stop and exit when the host goes away. Each spec starts a
// fresh plugin process through the fixture's Launcher, so these specs run only
// against a plugin directly (they are skipped when no Launcher is given).
package lifecycle

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/prism-suite/prism/harness/plugin"
	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// Register adds the lifecycle specs under "Lifecycle".
func Register(p fixture.Provider) bool {
	return Describe("Lifecycle", Label(string(capability.Lifecycle)), func() {
		var (
			fx   *fixture.Fixture
			proc *plugin.Process
			init *lifecyclev1.InitializeRequest
		)
		ctx := func() context.Context { return fx.Ctx() }

		BeforeEach(func() {
			fx = p()
			fx.CheckIntact()
			if fx.Launch == nil {
				Skip("the fixture cannot launch another process of this plugin (lifecycle specs need a plugin binary)")
			}
			var err error
			lctx, cancel := context.WithTimeout(context.Background(), fx.Timeouts.Handshake+fx.Timeouts.Call)
			defer cancel()
			proc, init, err = fx.Launch(lctx)
			DeferCleanup(func() { _ = proc.Stop(context.Background()) })
			Expect(err).NotTo(HaveOccurred(), "launch the plugin (handshake and health)")
		})

		It("prints its handshake line and serves gRPC health within the handshake deadline", func() {
			Expect(proc.ReadyTime).To(BeNumerically("<", fx.Timeouts.Handshake))
			resp, err := healthpb.NewHealthClient(proc.Conn).Check(ctx(), &healthpb.HealthCheckRequest{})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetStatus()).To(Equal(healthpb.HealthCheckResponse_SERVING))
			AddReportEntry("spawn to SERVING", ReportEntryVisibilityFailureOrVerbose, proc.ReadyTime.String())
		})

		It("describes itself with a name, a version, limits and only known capabilities", func() {
			d, err := proc.Lifecycle.Describe(ctx(), &lifecyclev1.DescribeRequest{})
			Expect(err).NotTo(HaveOccurred())
			Expect(d.GetName()).NotTo(BeEmpty(), "name")
			Expect(d.GetVersion()).NotTo(BeEmpty(), "version")
			Expect(d.GetProtocolVersion()).To(Equal(int32(1)), "protocol_version")
			for _, c := range d.GetCapabilities() {
				Expect(capability.Known(capability.Name(c.GetName()))).To(BeTrue(), "unknown capability %q", c.GetName())
				Expect(c.GetInterfaceVersion()).NotTo(BeEmpty(), "interface_version of %q", c.GetName())
			}
		})

		It("refuses data calls before Start with FailedPrecondition", func() {
			Expect(dataCall(fx, proc)).To(fixture.HaveCode(codes.FailedPrecondition))
		})

		It("rejects an invalid config in Initialize with InvalidArgument naming the field", func() {
			if len(fx.BadConfigs) == 0 {
				Skip("no invalid config example was given for this plugin")
			}
			for _, bad := range fx.BadConfigs {
				cfg, err := structpb.NewStruct(bad.Config)
				Expect(err).NotTo(HaveOccurred(), "example %q", bad.Name)
				_, err = proc.Lifecycle.Initialize(ctx(), &lifecyclev1.InitializeRequest{Config: cfg, Credentials: init.GetCredentials()})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, bad.Field), "example %q", bad.Name)
			}
			// A rejected config leaves the plugin usable with a good one.
			_, err := proc.Setup(ctx(), init)
			Expect(err).NotTo(HaveOccurred(), "Initialize and Start with the valid config after the invalid ones")
		})

		It("reports HEALTHY after Initialize and Start", func() {
			_, err := proc.Setup(ctx(), init)
			Expect(err).NotTo(HaveOccurred())
			h, err := proc.Lifecycle.HealthCheck(ctx(), &lifecyclev1.HealthCheckRequest{})
			Expect(err).NotTo(HaveOccurred())
			Expect(h.GetStatus()).To(Equal(lifecyclev1.HealthCheckResponse_STATUS_HEALTHY), "message: %s", h.GetMessage())
		})

		It("refuses new data calls with Unavailable after Drain", func() {
			_, err := proc.Setup(ctx(), init)
			Expect(err).NotTo(HaveOccurred())
			_, err = proc.Lifecycle.Drain(ctx(), &lifecyclev1.DrainRequest{Deadline: durationpb.New(fx.Timeouts.Stop)})
			Expect(err).NotTo(HaveOccurred())
			Expect(dataCall(fx, proc)).To(fixture.HaveCode(codes.Unavailable))
		})

		It("ends open subscriptions with Unavailable when it drains, leaving no call in flight", func() {
			if !fx.Declared().Has(capability.PubSubBasic) {
				Skip("pubsub.basic is not declared by this plugin")
			}
			_, err := proc.Setup(ctx(), init)
			Expect(err).NotTo(HaveOccurred())
			sctx, cancel := context.WithTimeout(context.Background(), fx.Timeouts.Stop+fx.Timeouts.Call)
			defer cancel()
			stream, err := pubsubv1.NewPubSubClient(proc.Conn).Subscribe(sctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
				Subscription: &pubsubv1.Subscription{Topic: fx.Prefix() + "drain"}}})).To(Succeed())
			ev, err := stream.Recv()
			Expect(err).NotTo(HaveOccurred())
			Expect(ev.GetSubscribed()).NotTo(BeNil(), "the first event must be Subscribed")
			resp, err := proc.Lifecycle.Drain(ctx(), &lifecyclev1.DrainRequest{Deadline: durationpb.New(fx.Timeouts.Stop)})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetInFlight()).To(BeZero(), "an open subscription kept Drain waiting until its deadline")
			_, err = stream.Recv()
			Expect(err).To(fixture.HaveCode(codes.Unavailable), "the subscription must end with Unavailable when the plugin drains")
		})

		It("answers Stop within the stop deadline", func() {
			_, err := proc.Setup(ctx(), init)
			Expect(err).NotTo(HaveOccurred())
			sctx, cancel := context.WithTimeout(context.Background(), fx.Timeouts.Stop)
			defer cancel()
			start := time.Now()
			_, err = proc.Lifecycle.Stop(sctx, &lifecyclev1.StopRequest{})
			Expect(err).NotTo(HaveOccurred())
			Expect(time.Since(start)).To(BeNumerically("<", fx.Timeouts.Stop))
		})

		describeDetails(func() (*fixture.Fixture, *plugin.Process, *lifecyclev1.InitializeRequest) { return fx, proc, init })

		It("exits when its stdin closes", func() {
			_, err := proc.Setup(ctx(), init)
			Expect(err).NotTo(HaveOccurred())
			Expect(proc.CloseStdin()).To(Succeed())
			Eventually(proc.Exited()).WithTimeout(fx.Timeouts.Stop).Should(BeClosed(),
				"the plugin must exit within %v of its host closing stdin", fx.Timeouts.Stop)
		})
	})
}

// dataCall makes one call of a data API the plugin declares (a KeyValue Get,
// else a PubSub Publish) and returns its error; it skips the spec when the
// plugin declares neither.
func dataCall(fx *fixture.Fixture, proc *plugin.Process) error {
	switch declared := fx.Declared(); {
	case declared.Has(capability.KeyValueBasic):
		_, err := keyvaluev1.NewKeyValueClient(proc.Conn).Get(fx.Ctx(), &keyvaluev1.GetRequest{Key: "k"})
		return err
	case declared.Has(capability.PubSubBasic):
		_, err := pubsubv1.NewPubSubClient(proc.Conn).Publish(fx.Ctx(), &pubsubv1.PublishRequest{Topic: fx.Prefix() + "t"})
		return err
	}
	Skip("the plugin declares no data API the lifecycle specs know (keyvalue.basic, pubsub.basic)")
	return nil
}
