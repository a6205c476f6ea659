package keyvalue

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/harness/backend"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// Labels of the harness abilities the fault specs need.
var (
	faultOutage = Label("fault:outage")
	faultPause  = Label("fault:pause")
)

func describeFaults(sess func() *session) {
	Context("faults", basic, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		health := func() *lifecyclev1.HealthCheckResponse {
			GinkgoHelper()
			ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Call)
			defer cancel()
			h, err := s.fx.Lifecycle.HealthCheck(ctx, &lifecyclev1.HealthCheckRequest{})
			Expect(err).NotTo(HaveOccurred(), "HealthCheck")
			return h
		}
		expectHealthy := func(what string) {
			GinkgoHelper()
			Eventually(func() lifecyclev1.HealthCheckResponse_Status { return health().GetStatus() }).
				WithTimeout(s.fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).
				Should(Equal(lifecyclev1.HealthCheckResponse_STATUS_HEALTHY), what)
		}

		It("fails fast with Unavailable while the backend is down, recovers by itself, and keeps persisted data", faultOutage, func() {
			out, ok := s.fx.Backend.(backend.Outager)
			if !ok {
				Skip(fmt.Sprintf("the %s backend via %s cannot be taken down and brought back", s.fx.Backend.Info().Kind, s.fx.Backend.Info().Provider))
			}
			k := s.key("survivor")
			s.MustSet(k, []byte("before the outage"))

			Expect(out.Down(context.Background())).To(Succeed(), "take the backend down")
			DeferCleanup(func() { _ = out.Up(context.Background()) })

			start := time.Now()
			_, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: k})
			Expect(err).To(fixture.HaveCode(codes.Unavailable), "Get while the backend is down")
			Expect(time.Since(start)).To(BeNumerically("<", s.fx.Timeouts.Call/2),
				"a request to a backend that is down must fail fast, not wait for its deadline")
			_, err = s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: s.key("during"), Value: []byte("x")})
			Expect(err).To(fixture.HaveCode(codes.Unavailable), "Set while the backend is down")
			Eventually(func() lifecyclev1.HealthCheckResponse_Status { return health().GetStatus() }).
				WithTimeout(s.fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).
				Should(Equal(lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY), "health while the backend is down")

			Expect(out.Up(context.Background())).To(Succeed(), "bring the backend back")
			Eventually(func() error {
				_, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: k})
				return err
			}).WithTimeout(s.fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).Should(Succeed(),
				"the plugin must recover by itself once the backend is back")
			if out.Persistent() {
				Expect(s.MustGet(k)).To(Equal([]byte("before the outage")), "data written before the restart of a persistent backend")
			}
			s.MustSet(s.key("after"), []byte("y"))
			expectHealthy("health after the backend came back")
		})

		It("answers DeadlineExceeded within the request deadline while the backend hangs, without piling up calls", faultPause, func() {
			p, ok := s.fx.Backend.(backend.Pauser)
			if !ok {
				Skip(fmt.Sprintf("the %s backend via %s cannot be paused", s.fx.Backend.Info().Kind, s.fx.Backend.Info().Provider))
			}
			k := s.key("frozen")
			s.MustSet(k, []byte("v"))
			before := goroutines(health())

			Expect(p.Pause(context.Background())).To(Succeed(), "pause the backend")
			DeferCleanup(func() { _ = p.Unpause(context.Background()) })

			const deadline = 300 * time.Millisecond
			const calls = 50
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
			for i := range calls {
				Expect(codesSeen[i]).To(Equal(codes.DeadlineExceeded), "call %d against a hung backend", i)
				Expect(elapsed[i]).To(BeNumerically("<", deadline+time.Second), "call %d returned long after its deadline", i)
			}
			// Still paused: the timed-out calls must let go of the plugin's
			// goroutines without waiting for the backend to come back.
			Expect(health().GetStatus()).NotTo(Equal(lifecyclev1.HealthCheckResponse_STATUS_HEALTHY), "health while the backend hangs")
			if before >= 0 {
				Eventually(func() int { return goroutines(health()) }).WithTimeout(s.fx.Timeouts.Eventually).
					Should(BeNumerically("<=", before+calls/5),
						"goroutines in the plugin after %d calls timed out against a backend that is still hung (before: %d)", calls, before)
			}

			Expect(p.Unpause(context.Background())).To(Succeed(), "unpause the backend")
			Eventually(func() error {
				_, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: k})
				return err
			}).WithTimeout(s.fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).Should(Succeed(), "recovery after unpause")
			expectHealthy("health after unpause")
		})
	})
}

// goroutines reads the SDK's goroutine count from health details (-1: not reported).
func goroutines(h *lifecyclev1.HealthCheckResponse) int {
	n, err := strconv.Atoi(h.GetDetails()[sdk.GoroutinesDetail])
	if err != nil {
		return -1
	}
	return n
}
