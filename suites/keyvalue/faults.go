package keyvalue

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/detail"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// Labels of the harness abilities the fault specs need.
var (
	faultOutage = Label("fault:outage")
	faultPause  = Label("fault:pause")
)

// describeFaults registers the specs that take the backend down or pause it.
// Each runs on a backend instance, plugin process and (through a proxy) a
// proxy of its own ([fixture.Fixture.Private]), so nothing it breaks reaches
// the specs that follow. Taking the backend down, pausing it and bringing it
// back are harness steps (a failure is a harness error); everything the
// plugin does about it is asserted.
func describeFaults(sess func() *session) {
	Context("faults", basic, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		// private moves the spec onto a backend and plugin of its own.
		private := func() (*fixture.Private, *session) {
			GinkgoHelper()
			p := s.fx.Private()
			ps := &session{fx: s.fx, kv: p.Target.KeyValue(), prefix: s.prefix}
			DeferCleanup(ps.cleanup)
			return p, ps
		}
		health := func(p *fixture.Private) *lifecyclev1.HealthCheckResponse {
			GinkgoHelper()
			ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Call)
			defer cancel()
			h, err := p.Health(ctx)
			Expect(err).NotTo(HaveOccurred(), "HealthCheck")
			return h
		}
		expectHealth := func(p *fixture.Private, want lifecyclev1.HealthCheckResponse_Status, what string) {
			GinkgoHelper()
			Eventually(func() lifecyclev1.HealthCheckResponse_Status { return health(p).GetStatus() }).
				WithTimeout(s.fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).
				Should(Equal(want), what)
		}

		It("fails fast with Unavailable while the backend is down, recovers by itself, and keeps persisted data", faultOutage, func() {
			if _, ok := s.fx.Backend.(backend.Outager); !ok {
				Skip(fmt.Sprintf("the %s backend via %s cannot be taken down and brought back", s.fx.Backend.Info().Kind, s.fx.Backend.Info().Provider))
			}
			p, s := private()
			out := p.Outager()
			k := s.key("survivor")
			s.MustSet(k, []byte("before the outage"))

			before := s.unaidedLatency()
			p.Down()

			start := time.Now()
			_, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: k})
			took := time.Since(start)
			Expect(err).To(fixture.HaveCode(codes.Unavailable), "Get while the backend is down")
			// Fail fast means well before the deadline: half of it, plus
			// room for how slow the machine is now, measured before and
			// after with calls the plugin answers without its backend.
			if bound := s.fx.Timeouts.Call / 2; took >= bound {
				bound += 4 * max(before, s.unaidedLatency())
				Expect(took).To(BeNumerically("<", bound),
					"a request to a backend that is down must fail fast, not wait for its deadline (%v)", s.fx.Timeouts.Call)
			}
			_, err = s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: s.key("during"), Value: []byte("x")})
			Expect(err).To(fixture.HaveCode(codes.Unavailable), "Set while the backend is down")
			expectHealth(p, lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY, "health while the backend is down")

			p.Up()
			Eventually(func() error {
				_, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: k})
				return err
			}).WithTimeout(s.fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).Should(Succeed(),
				"the plugin must recover by itself once the backend is back")
			if out.Persistent() {
				Expect(s.MustGet(k)).To(Equal([]byte("before the outage")), "data written before the restart of a persistent backend")
			}
			s.MustSet(s.key("after"), []byte("y"))
			expectHealth(p, lifecyclev1.HealthCheckResponse_STATUS_HEALTHY, "health after the backend came back")
		})

		// atOnce sends calls Get(k) at once, each with deadline, and
		// returns the code and the time of each.
		atOnce := func(s *session, k string, calls int, deadline time.Duration) ([]codes.Code, []time.Duration) {
			var wg sync.WaitGroup
			codesSeen := make([]codes.Code, calls)
			elapsed := make([]time.Duration, calls)
			for i := range calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), deadline)
					defer cancel()
					start := time.Now()
					_, err := s.kv.Get(ctx, &keyvaluev1.GetRequest{Key: k})
					codesSeen[i], elapsed[i] = status.Code(err), time.Since(start)
				}()
			}
			wg.Wait()
			return codesSeen, elapsed
		}

		// hang pauses the backend and sends calls Get(k) with a deadline
		// each, at once, asserting that every one answers DeadlineExceeded
		// within its deadline, plus room for a loaded machine: at least a
		// second, and four times the slowest of the same calls sent at once
		// to the live backend just before. The deadline is 300 ms, or twice
		// that slowest call when the machine is slower, so the calls reach
		// the plugin before it passes.
		hang := func(p *fixture.Private, s *session, k string, calls int) {
			GinkgoHelper()
			live, took := atOnce(s, k, calls, s.fx.Timeouts.Call)
			for i, c := range live {
				Expect(c).To(Equal(codes.OK), "call %d of %d at once to the live backend, before the pause", i, calls)
			}
			slowest := slices.Max(took)
			deadline := max(300*time.Millisecond, 2*slowest)
			room := max(time.Second, 4*slowest)

			p.Pause()
			codesSeen, elapsed := atOnce(s, k, calls, deadline)
			for i := range calls {
				Expect(codesSeen[i]).To(Equal(codes.DeadlineExceeded), "call %d against a hung backend", i)
				Expect(elapsed[i]).To(BeNumerically("<", deadline+room),
					"call %d returned long after its deadline of %v (the slowest of %d calls at once took %v before the pause)", i, deadline, calls, slowest)
			}
		}

		It("answers DeadlineExceeded within the request deadline while the backend hangs, and serves again once it resumes", faultPause, func() {
			if _, ok := s.fx.Backend.(backend.Pauser); !ok {
				Skip(fmt.Sprintf("the %s backend via %s cannot be paused", s.fx.Backend.Info().Kind, s.fx.Backend.Info().Provider))
			}
			p, s := private()
			k := s.key("frozen")
			s.MustSet(k, []byte("v"))

			hang(p, s, k, 50)
			if p.Lifecycle != nil {
				Expect(health(p).GetStatus()).NotTo(Equal(lifecyclev1.HealthCheckResponse_STATUS_HEALTHY), "health while the backend hangs")
			} else { // the proxy checks its plugin's health on an interval of its own
				Eventually(func() lifecyclev1.HealthCheckResponse_Status { return health(p).GetStatus() }).
					WithTimeout(s.fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).
					ShouldNot(Equal(lifecyclev1.HealthCheckResponse_STATUS_HEALTHY), "health while the backend hangs")
			}

			p.Unpause()
			Eventually(func() error {
				_, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: k})
				return err
			}).WithTimeout(s.fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).Should(Succeed(), "recovery after unpause")
			expectHealth(p, lifecyclev1.HealthCheckResponse_STATUS_HEALTHY, "health after unpause")
		})

		It("lets go of the calls that timed out while the backend still hangs, without piling up calls in flight", faultPause, func() {
			if _, ok := s.fx.Backend.(backend.Pauser); !ok {
				Skip(fmt.Sprintf("the %s backend via %s cannot be paused", s.fx.Backend.Info().Kind, s.fx.Backend.Info().Provider))
			}
			// The count is read from the plugin's HealthCheck details, which
			// only a direct target shows.
			if s.fx.Target.Via == target.Proxy {
				Skip("through the proxy the plugin's HealthCheck details are not visible, so its calls in flight cannot be counted (a direct run, --via direct or both, counts them)")
			}
			if s.fx.Lifecycle == nil {
				Skip("the fixture gives no lifecycle client, so the plugin's calls in flight cannot be read")
			}
			h, err := s.fx.Lifecycle.HealthCheck(s.ctx(), &lifecyclev1.HealthCheckRequest{})
			Expect(err).NotTo(HaveOccurred(), "HealthCheck")
			if inflight(h) < 0 {
				Skip(fmt.Sprintf("the plugin reports no %s in its HealthCheck details (a standard detail of proto/PROTOCOL.md), so a pile-up of calls cannot be measured", detail.InflightCalls))
			}
			p, s := private()
			k := s.key("frozen")
			s.MustSet(k, []byte("v"))
			before := inflight(health(p))
			Expect(before).To(BeNumerically(">=", 0), "the plugin's calls in flight (%s) in HealthCheck details", detail.InflightCalls)

			const calls = 50
			hang(p, s, k, calls)
			// Still paused: the timed-out calls must end in the plugin too,
			// without waiting for the backend to come back.
			Eventually(func() int64 { return inflight(health(p)) }).WithTimeout(s.fx.Timeouts.Eventually).
				Should(BeNumerically("<=", before),
					"%s of the plugin after %d calls timed out against a backend that is still hung (before: %d)", detail.InflightCalls, calls, before)
		})
	})
}

// unaidedLatency returns the slowest of three calls the plugin answers
// without its backend (Get of an empty key, refused with InvalidArgument):
// how slow the machine and the plugin are now, whatever the backend does.
func (s *session) unaidedLatency() time.Duration {
	GinkgoHelper()
	var slowest time.Duration
	for range 3 {
		t := time.Now()
		_, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: ""})
		Expect(err).To(fixture.HaveCode(codes.InvalidArgument), "Get of an empty key, to measure call latency")
		slowest = max(slowest, time.Since(t))
	}
	return slowest
}

// setLatency returns the slowest of five Sets of key, one at a time: how
// long one write through the plugin and its backend takes on this machine now.
func (s *session) setLatency(key string) time.Duration {
	GinkgoHelper()
	var slowest time.Duration
	for range 5 {
		t := time.Now()
		_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: key, Value: []byte("latency")})
		Expect(err).NotTo(HaveOccurred(), "Set, to measure call latency")
		slowest = max(slowest, time.Since(t))
	}
	return slowest
}

// burstCost is what one Set costs the plugin when many are in flight,
// measured now: the wall time of n concurrent Sets (of keys[:n]), divided by
// n. A plugin that serves one call at a time (or is slowed by the others in
// flight) shows it here and not in setLatency, which times calls alone.
func (s *session) burstCost(keys []string) time.Duration {
	GinkgoHelper()
	var wg sync.WaitGroup
	errs := make(chan error, len(keys))
	t := time.Now()
	for _, k := range keys {
		wg.Go(func() {
			if _, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: k, Value: []byte("burst")}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	Expect(<-errs).NotTo(HaveOccurred(), "Set in a burst of %d, to measure the cost of a call among many", len(keys))
	return time.Since(t) / time.Duration(len(keys))
}

// inflight reads the plugin's calls in flight from health details (-1: not
// reported); a reported value that is not a count fails the spec.
func inflight(h *lifecyclev1.HealthCheckResponse) int64 {
	GinkgoHelper()
	n, ok, err := detail.Get(h.GetDetails(), detail.InflightCalls)
	Expect(err).NotTo(HaveOccurred())
	if !ok {
		return -1
	}
	return n
}
