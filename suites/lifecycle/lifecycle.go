// Package lifecycle holds the specs every Prism plugin must pass, whatever it
// declares: the handshake, gRPC health, Describe, Initialize validation, every
// RPC in every state of the state machine (the table in the comment of
// prism.lifecycle.v1's Lifecycle service), Drain while a call is in flight,
// and exit when the host goes away. The specs start plugin processes of
// their own through the fixture's Launcher (the state specs share one per
// state while it stays in that state), so they run only against a plugin
// directly (they are skipped when no Launcher is given).
package lifecycle

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/prism-suite/prism/harness/plugin"
	"github.com/prism-suite/prism/proto/capability"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// Register adds the lifecycle specs under "Lifecycle": those of the plugin
// process (handshake, Describe, Initialize validation, exit), one per state
// of the state machine and RPC (describeStates), and those of Drain with a
// call in flight (describeDrainInFlight). The fixture is read when each spec
// runs.
func Register(p fixture.Provider) bool {
	return Describe("Lifecycle", Label(string(capability.Lifecycle)), func() {
		var fx *fixture.Fixture
		ctx := func() context.Context { return fx.Ctx() }

		BeforeEach(func() {
			fx = p()
			fx.CheckIntact()
			if fx.Launch == nil {
				Skip("the fixture cannot launch another process of this plugin (lifecycle specs need a plugin binary)")
			}
		})
		// launch starts a fresh plugin process for the spec and stops it
		// after the spec.
		launch := func() (*plugin.Process, *lifecyclev1.InitializeRequest) {
			GinkgoHelper()
			lctx, cancel := context.WithTimeout(context.Background(), fx.Timeouts.Handshake+fx.Timeouts.Call)
			defer cancel()
			proc, init, err := fx.Launch(lctx)
			DeferCleanup(func() { _ = proc.Stop(context.Background()) })
			Expect(err).NotTo(HaveOccurred(), "launch the plugin (handshake and health)")
			return proc, init
		}

		It("prints its handshake line and serves gRPC health within the handshake deadline", func() {
			proc, _ := launch()
			Expect(proc.ReadyTime).To(BeNumerically("<", fx.Timeouts.Handshake))
			resp, err := healthpb.NewHealthClient(proc.Conn).Check(ctx(), &healthpb.HealthCheckRequest{})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetStatus()).To(Equal(healthpb.HealthCheckResponse_SERVING))
			AddReportEntry("spawn to SERVING", ReportEntryVisibilityFailureOrVerbose, proc.ReadyTime.String())
		})

		It("describes itself with a name, a version, limits and only known capabilities", func() {
			proc, _ := launch()
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

		It("rejects an invalid config in Initialize with InvalidArgument naming the field", func() {
			if len(fx.BadConfigs) == 0 {
				Skip("no invalid config example was given for this plugin (prism-accept --bad-config FILE; the built-in examples are for the reference plugins only)")
			}
			proc, init := launch()
			for _, bad := range fx.BadConfigs {
				req, err := badInit(init, bad)
				Expect(err).NotTo(HaveOccurred(), "example %q", bad.Name)
				_, err = proc.Lifecycle.Initialize(ctx(), req)
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, bad.Field), "example %q", bad.Name)
			}
			// A rejected config leaves the plugin usable with a good one.
			_, err := proc.Setup(ctx(), init)
			Expect(err).NotTo(HaveOccurred(), "Initialize and Start with the valid config after the invalid ones")
		})

		It("ends open subscriptions with Unavailable when it drains, leaving no call in flight", func() {
			if !fx.Declared().Has(capability.PubSubBasic) {
				Skip("pubsub.basic is not declared by this plugin")
			}
			proc, init := launch()
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

		describeDetails(func() (*fixture.Fixture, *plugin.Process, *lifecyclev1.InitializeRequest) {
			proc, init := launch()
			return fx, proc, init
		})

		It("exits when its stdin closes", func() {
			proc, init := launch()
			_, err := proc.Setup(ctx(), init)
			Expect(err).NotTo(HaveOccurred())
			Expect(proc.CloseStdin()).To(Succeed())
			Eventually(proc.Exited()).WithTimeout(fx.Timeouts.Stop).Should(BeClosed(),
				"the plugin must exit within %v of its host closing stdin", fx.Timeouts.Stop)
		})

		current := func() *fixture.Fixture { return fx }
		describeStates(current)
		describeDrainInFlight(current)
	})
}

// badInit returns init with its config replaced by bad's (credentials kept).
func badInit(init *lifecyclev1.InitializeRequest, bad fixture.BadConfig) (*lifecyclev1.InitializeRequest, error) {
	cfg, err := structpb.NewStruct(bad.Config)
	if err != nil {
		return nil, err
	}
	return &lifecyclev1.InitializeRequest{Config: cfg, Credentials: init.GetCredentials(), Namespace: init.GetNamespace()}, nil
}
