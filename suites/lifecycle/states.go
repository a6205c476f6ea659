package lifecycle

import (
	"context"
	"fmt"
	"io"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/harness/plugin"
	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// state is a state of the plugin protocol's state machine, named as the
// protocol names it in error messages (prism.lifecycle.v1.Lifecycle).
type state string

const (
	stateNew         state = "new"
	stateInitialized state = "initialized"
	stateStarted     state = "started"
	stateDraining    state = "draining"
	stateStopped     state = "stopped"
)

var states = []state{stateNew, stateInitialized, stateStarted, stateDraining, stateStopped}

// beforeStart reports whether data calls are refused with FailedPrecondition in st.
func (st state) beforeStart() bool { return st == stateNew || st == stateInitialized }

// afterDrain reports whether data calls are refused with Unavailable in st.
func (st state) afterDrain() bool { return st == stateDraining || st == stateStopped }

// dataServices maps the capability that makes a plugin serve a data service
// to the service's name in gRPC health.
var dataServices = []struct {
	needs   capability.Name
	service string
}{
	{capability.KeyValueBasic, keyvaluev1.KeyValue_ServiceDesc.ServiceName},
	{capability.PubSubBasic, pubsubv1.PubSub_ServiceDesc.ServiceName},
}

// subject is one plugin process the state specs drive: the process, the
// Initialize request that configures it, and the state it was brought to.
type subject struct {
	fx    *fixture.Fixture
	proc  *plugin.Process
	init  *lifecyclev1.InitializeRequest
	state state
}

func (s *subject) ctx() context.Context { return s.fx.Ctx() }

// drainDeadline is the deadline every Drain of the state specs sends: no
// call is in flight, so Drain must answer long before it.
func (s *subject) drainDeadline() time.Duration { return s.fx.Timeouts.Stop }

// drain calls Drain with drainDeadline and a context that outlives it.
func (s *subject) drain() (*lifecyclev1.DrainResponse, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.drainDeadline()+s.fx.Timeouts.Call)
	defer cancel()
	start := time.Now()
	resp, err := s.proc.Lifecycle.Drain(ctx, &lifecyclev1.DrainRequest{Deadline: durationpb.New(s.drainDeadline())})
	return resp, time.Since(start), err
}

// bringTo launches a plugin process and takes it to st through the
// protocol's own transitions; a refused transition is the plugin's failure.
func bringTo(fx *fixture.Fixture, st state) *subject {
	GinkgoHelper()
	lctx, cancel := context.WithTimeout(context.Background(), fx.Timeouts.Handshake+fx.Timeouts.Call)
	defer cancel()
	proc, init, err := fx.Launch(lctx)
	s := &subject{fx: fx, proc: proc, init: init, state: stateNew}
	if err != nil {
		_ = proc.Stop(context.Background())
		Expect(err).NotTo(HaveOccurred(), "launch the plugin (handshake and health)")
	}
	step := func(what string, call func() error) {
		GinkgoHelper()
		if err := call(); err != nil {
			_ = proc.Stop(context.Background())
			Expect(err).NotTo(HaveOccurred(), "bring the plugin to state %s: %s", st, what)
		}
	}
	if st == stateNew {
		return s
	}
	step("Initialize", func() error { _, err := proc.Lifecycle.Initialize(s.ctx(), init); return err })
	switch st {
	case stateStarted, stateDraining:
		step("Start", func() error { _, err := proc.Lifecycle.Start(s.ctx(), &lifecyclev1.StartRequest{}); return err })
	case stateStopped:
		step("Start", func() error { _, err := proc.Lifecycle.Start(s.ctx(), &lifecyclev1.StartRequest{}); return err })
		step("Stop", func() error { _, err := proc.Lifecycle.Stop(s.ctx(), &lifecyclev1.StopRequest{}); return err })
	}
	if st == stateDraining {
		step("Drain", func() error { _, _, err := s.drain(); return err })
	}
	s.state = st
	return s
}

// answer is what the protocol promises for one RPC in one state: the
// sentence the spec is named by, the state the plugin is in afterwards, and
// the check of the RPC's answer.
type answer struct {
	says  string
	next  state
	check func(s *subject)
}

// rpc is one RPC a plugin serves; needs is the capability without which the
// plugin does not serve it ("" for every plugin).
type rpc struct {
	name  string
	needs capability.Name
	in    func(st state) answer
}

func refusedBeforeStart(call func(s *subject) error) func(st state) answer {
	return func(st state) answer {
		switch {
		case st.beforeStart():
			return answer{says: "answers FailedPrecondition naming the state", next: st, check: func(s *subject) {
				GinkgoHelper()
				Expect(call(s)).To(fixture.HaveCodeNaming(codes.FailedPrecondition, string(st)))
			}}
		case st.afterDrain():
			return answer{says: "answers Unavailable", next: st, check: func(s *subject) {
				GinkgoHelper()
				Expect(call(s)).To(fixture.HaveCode(codes.Unavailable))
			}}
		}
		return answer{}
	}
}

// dataRPC is a data call: refused before Start (FailedPrecondition naming
// the state) and after Drain (Unavailable), served when started.
func dataRPC(name string, needs capability.Name, served string, call func(s *subject) error, serve func(s *subject)) rpc {
	refused := refusedBeforeStart(call)
	return rpc{name: name, needs: needs, in: func(st state) answer {
		if st == stateStarted {
			return answer{says: served, next: st, check: serve}
		}
		return refused(st)
	}}
}

func (s *subject) get(key string) (*keyvaluev1.GetResponse, error) {
	return keyvaluev1.NewKeyValueClient(s.proc.Conn).Get(s.ctx(), &keyvaluev1.GetRequest{Key: key})
}

func (s *subject) set(key string, value []byte) error {
	_, err := keyvaluev1.NewKeyValueClient(s.proc.Conn).Set(s.ctx(), &keyvaluev1.SetRequest{Key: key, Value: value})
	return err
}

func (s *subject) publish() (*pubsubv1.PublishResponse, error) {
	return pubsubv1.NewPubSubClient(s.proc.Conn).Publish(s.ctx(), &pubsubv1.PublishRequest{Topic: s.fx.Prefix() + "state", Payload: []byte("p")})
}

// subscribe opens a subscription and returns its first event's error, or
// nil when the first event is Subscribed; it ends the stream before it returns.
func (s *subject) subscribe() error {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Call)
	defer cancel()
	stream, err := pubsubv1.NewPubSubClient(s.proc.Conn).Subscribe(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
		Subscription: &pubsubv1.Subscription{Topic: s.fx.Prefix() + "state"}}}); err != nil && err != io.EOF {
		return err
	}
	ev, err := stream.Recv()
	if err != nil {
		return err
	}
	Expect(ev.GetSubscribed()).NotTo(BeNil(), "the first event of a subscription must be Subscribed, got %v", ev)
	return nil
}

func notDeclaredOrNot(st state) string {
	if st == stateNew || st == stateStopped {
		return "answers FailedPrecondition naming the state, or Unimplemented when auth.rotation is not declared"
	}
	return "accepts the credentials in use, or answers Unimplemented when auth.rotation is not declared"
}

// rpcs is every RPC a plugin serves, with the protocol's answer in each
// state (the table in prism.lifecycle.v1's Lifecycle service comment).
var rpcs = []rpc{
	{name: "Describe", in: func(st state) answer {
		return answer{says: "answers with the plugin's name and version", next: st, check: func(s *subject) {
			GinkgoHelper()
			d, err := s.proc.Lifecycle.Describe(s.ctx(), &lifecyclev1.DescribeRequest{})
			Expect(err).NotTo(HaveOccurred())
			Expect(d.GetName()).To(Equal(s.fx.Description.GetName()), "name")
			Expect(d.GetVersion()).To(Equal(s.fx.Description.GetVersion()), "version")
		}}
	}},
	{name: "HealthCheck", in: func(st state) answer {
		want := map[state]lifecyclev1.HealthCheckResponse_Status{
			stateNew: lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY, stateInitialized: lifecyclev1.HealthCheckResponse_STATUS_HEALTHY,
			stateStarted: lifecyclev1.HealthCheckResponse_STATUS_HEALTHY, stateDraining: lifecyclev1.HealthCheckResponse_STATUS_DEGRADED,
			stateStopped: lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY,
		}[st]
		says := map[state]string{
			stateNew: "reports UNHEALTHY", stateInitialized: "reports HEALTHY (the backend is reachable)",
			stateStarted: "reports HEALTHY", stateDraining: "reports DEGRADED, not HEALTHY", stateStopped: "reports UNHEALTHY",
		}[st]
		return answer{says: says, next: st, check: func(s *subject) {
			GinkgoHelper()
			Expect(s.health()).To(Equal(want))
		}}
	}},
	{name: "gRPC health", in: func(st state) answer {
		says := "answers SERVING for the process and NOT_SERVING for each data service"
		if st == stateStarted {
			says = "answers SERVING for the process and for each data service"
		}
		return answer{says: says, next: st, check: func(s *subject) {
			GinkgoHelper()
			hc := healthpb.NewHealthClient(s.proc.Conn)
			resp, err := hc.Check(s.ctx(), &healthpb.HealthCheckRequest{})
			Expect(err).NotTo(HaveOccurred(), "gRPC health of the process (service \"\")")
			Expect(resp.GetStatus()).To(Equal(healthpb.HealthCheckResponse_SERVING), "gRPC health of the process (service \"\")")
			want := healthpb.HealthCheckResponse_NOT_SERVING
			if st == stateStarted {
				want = healthpb.HealthCheckResponse_SERVING
			}
			declared := s.fx.Declared()
			for _, d := range dataServices {
				if !declared.Has(d.needs) {
					continue
				}
				resp, err := hc.Check(s.ctx(), &healthpb.HealthCheckRequest{Service: d.service})
				Expect(err).NotTo(HaveOccurred(), "gRPC health of %s", d.service)
				Expect(resp.GetStatus()).To(Equal(want), "gRPC health of %s", d.service)
			}
		}}
	}},
	{name: "RotateCredentials", in: func(st state) answer {
		return answer{says: notDeclaredOrNot(st), next: st, check: func(s *subject) {
			GinkgoHelper()
			_, err := s.proc.Lifecycle.RotateCredentials(s.ctx(), &lifecyclev1.RotateCredentialsRequest{Credentials: s.init.GetCredentials()})
			switch {
			case !s.fx.Declared().Has(capability.AuthRotation):
				Expect(err).To(fixture.HaveCode(codes.Unimplemented), "auth.rotation is not declared")
			case st == stateNew || st == stateStopped:
				Expect(err).To(fixture.HaveCodeNaming(codes.FailedPrecondition, string(st)))
			default:
				Expect(err).NotTo(HaveOccurred(), "rotate to the credentials in use")
			}
		}}
	}},
	// What a served data call answers is its own suite's business (a Get
	// of a key never set is NotFound there); here it must not be refused.
	dataRPC("KeyValue Get", capability.KeyValueBasic, "serves it (any answer but a refusal)",
		func(s *subject) error { _, err := s.get(s.fx.Prefix() + "k"); return err },
		func(s *subject) {
			GinkgoHelper()
			_, err := s.get(s.fx.Prefix() + "never-set")
			Expect(err).NotTo(Or(fixture.HaveCode(codes.FailedPrecondition), fixture.HaveCode(codes.Unavailable)), "a Get once started")
		}),
	dataRPC("KeyValue Set", capability.KeyValueBasic, "serves it (OK)",
		func(s *subject) error { return s.set(s.fx.Prefix()+"k", []byte("v")) },
		func(s *subject) {
			GinkgoHelper()
			Expect(s.set(s.fx.Prefix()+"k", []byte("v"))).To(Succeed())
		}),
	dataRPC("PubSub Publish", capability.PubSubBasic, "serves it (with a message id)",
		func(s *subject) error { _, err := s.publish(); return err },
		func(s *subject) {
			GinkgoHelper()
			resp, err := s.publish()
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetId()).NotTo(BeEmpty(), "message id")
		}),
	dataRPC("PubSub Subscribe", capability.PubSubBasic, "serves it (Subscribed is the first event)",
		func(s *subject) error { return s.subscribe() },
		func(s *subject) {
			GinkgoHelper()
			Expect(s.subscribe()).To(Succeed())
		}),
	{name: "Initialize", in: func(st state) answer {
		switch st {
		case stateNew:
			return answer{says: "succeeds and initializes the plugin", next: stateInitialized, check: func(s *subject) {
				GinkgoHelper()
				_, err := s.proc.Lifecycle.Initialize(s.ctx(), s.init)
				Expect(err).NotTo(HaveOccurred())
			}}
		case stateInitialized:
			return answer{says: "refuses an invalid config naming the field and accepts a valid one again, staying initialized", next: st, check: func(s *subject) {
				GinkgoHelper()
				for _, bad := range s.fx.BadConfigs {
					req, err := badInit(s.init, bad)
					Expect(err).NotTo(HaveOccurred(), "example %q", bad.Name)
					_, err = s.proc.Lifecycle.Initialize(s.ctx(), req)
					Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, bad.Field), "example %q", bad.Name)
				}
				_, err := s.proc.Lifecycle.Initialize(s.ctx(), s.init)
				Expect(err).NotTo(HaveOccurred(), "Initialize again with the valid config")
			}}
		}
		return answer{says: "answers FailedPrecondition naming the state", next: st, check: func(s *subject) {
			GinkgoHelper()
			_, err := s.proc.Lifecycle.Initialize(s.ctx(), s.init)
			Expect(err).To(fixture.HaveCodeNaming(codes.FailedPrecondition, string(st)))
		}}
	}},
	{name: "Start", in: func(st state) answer {
		switch st {
		case stateInitialized, stateStarted:
			says, next := "succeeds again and changes nothing", st
			if st == stateInitialized {
				says, next = "succeeds and starts serving data calls", stateStarted
			}
			return answer{says: says, next: next, check: func(s *subject) {
				GinkgoHelper()
				_, err := s.proc.Lifecycle.Start(s.ctx(), &lifecyclev1.StartRequest{})
				Expect(err).NotTo(HaveOccurred())
			}}
		}
		return answer{says: "answers FailedPrecondition naming the state", next: st, check: func(s *subject) {
			GinkgoHelper()
			_, err := s.proc.Lifecycle.Start(s.ctx(), &lifecyclev1.StartRequest{})
			Expect(err).To(fixture.HaveCodeNaming(codes.FailedPrecondition, string(st)))
		}}
	}},
	{name: "Drain", in: func(st state) answer {
		says, next := "answers at once with nothing in flight and changes nothing", st
		if st == stateStarted {
			says, next = "answers at once with nothing in flight and refuses data calls from then on", stateDraining
		}
		return answer{says: says, next: next, check: func(s *subject) {
			GinkgoHelper()
			resp, took, err := s.drain()
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetInFlight()).To(BeZero(), "in_flight with no call in flight")
			Expect(took).To(BeNumerically("<", s.drainDeadline()),
				"Drain with no call in flight waited for its deadline (%v)", s.drainDeadline())
		}}
	}},
	{name: "Stop", in: func(st state) answer {
		says := "succeeds within the stop deadline and stops the plugin"
		if st == stateStopped {
			says = "succeeds again within the stop deadline"
		}
		return answer{says: says, next: stateStopped, check: func(s *subject) {
			GinkgoHelper()
			ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Stop)
			defer cancel()
			start := time.Now()
			_, err := s.proc.Lifecycle.Stop(ctx, &lifecyclev1.StopRequest{})
			Expect(err).NotTo(HaveOccurred())
			Expect(time.Since(start)).To(BeNumerically("<", s.fx.Timeouts.Stop))
		}}
	}},
}

func (s *subject) health() lifecyclev1.HealthCheckResponse_Status {
	GinkgoHelper()
	h, err := s.proc.Lifecycle.HealthCheck(s.ctx(), &lifecyclev1.HealthCheckRequest{})
	Expect(err).NotTo(HaveOccurred(), "HealthCheck")
	return h.GetStatus()
}

// expectState checks, through the protocol only, that the plugin is in st:
// by a data call's answer (FailedPrecondition naming the state before Start,
// served when started, Unavailable after Drain) and by HealthCheck (which
// tells draining from stopped).
func expectState(s *subject, st state, after string) {
	GinkgoHelper()
	declared := s.fx.Declared()
	var call func() error
	switch {
	case declared.Has(capability.KeyValueBasic):
		call = func() error { _, err := s.get(s.fx.Prefix() + "probe"); return err }
	case declared.Has(capability.PubSubBasic):
		call = func() error { _, err := s.publish(); return err }
	}
	if call != nil {
		err := call()
		switch {
		case st.beforeStart():
			Expect(err).To(fixture.HaveCodeNaming(codes.FailedPrecondition, string(st)), "%s the plugin must be %s: a data call", after, st)
		case st.afterDrain():
			Expect(err).To(fixture.HaveCode(codes.Unavailable), "%s the plugin must be %s: a data call", after, st)
		default:
			Expect(err).NotTo(Or(fixture.HaveCode(codes.FailedPrecondition), fixture.HaveCode(codes.Unavailable)),
				"%s the plugin must be %s: a data call must be served", after, st)
		}
	}
	switch st {
	case stateDraining:
		Expect(s.health()).To(Equal(lifecyclev1.HealthCheckResponse_STATUS_DEGRADED), "%s the plugin must be %s: HealthCheck", after, st)
	case stateStopped, stateNew:
		Expect(s.health()).To(Equal(lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY), "%s the plugin must be %s: HealthCheck", after, st)
	}
}

// describeStates registers one spec per (state, RPC) pair: the plugin is
// brought to the state through the protocol, the RPC is called, its answer
// checked against the protocol's table, and the state afterwards checked
// too. The specs of a state share one plugin process as long as they leave
// it in that state: the process is launched when a spec needs it, and
// stopped after a spec that moved it to another state (those run last) or
// failed, so each spec starts from a process in exactly its state.
func describeStates(fx func() *fixture.Fixture) {
	Context("state machine", func() {
		for _, st := range states {
			// The RPCs that leave the state run after those that keep it.
			var keep, move []rpc
			for _, r := range rpcs {
				if r.in(st).next == st {
					keep = append(keep, r)
				} else {
					move = append(move, r)
				}
			}
			Context("in state "+string(st), Ordered, func() {
				var cur *subject
				release := func() {
					if cur != nil {
						_ = cur.proc.Stop(context.Background())
						cur = nil
					}
				}
				AfterAll(release)
				for _, r := range append(keep, move...) {
					a := r.in(st)
					It(fmt.Sprintf("%s %s", r.name, a.says), func() {
						f := fx()
						if r.needs != "" && !f.Declared().Has(r.needs) {
							Skip(fmt.Sprintf("%s is not declared by this plugin, so it serves no %s", r.needs, r.name))
						}
						if cur == nil || cur.fx != f {
							release()
							cur = bringTo(f, st)
						}
						s := cur
						DeferCleanup(func() {
							if a.next != st || CurrentSpecReport().Failed() {
								release()
							}
						})
						a.check(s)
						expectState(s, a.next, fmt.Sprintf("after %s in state %s,", r.name, st))
					})
				}
			})
		}
	})
}
