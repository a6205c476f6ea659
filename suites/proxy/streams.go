package proxy

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// notNameRE matches what a queue group name may not hold.
var notNameRE = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// registerStreams adds the PubSub specs of isolation by topic and of open
// Subscribe streams through the proxy.
func registerStreams(get func() *fixture.Fixture) {
	var fx *fixture.Fixture
	BeforeEach(func() { fx = get() })
	publish := func(t target.Target, topic, payload string) {
		GinkgoHelper()
		_, err := t.PubSub().Publish(fx.Ctx(), &pubsubv1.PublishRequest{Topic: topic, Payload: []byte(payload)})
		Expect(err).NotTo(HaveOccurred(), "Publish %q to %q in %q", payload, topic, t.Namespace)
	}
	// next returns the next message's payload within the call timeout.
	next := func(s *subscription, what string) string {
		GinkgoHelper()
		select {
		case m, ok := <-s.messages:
			Expect(ok).To(BeTrue(), "%s: the subscription ended: %v", what, s.err)
			return string(m.GetPayload())
		case <-time.After(fx.Timeouts.Call):
			Fail(fmt.Sprintf("%s: no message within %v", what, fx.Timeouts.Call))
			return ""
		}
	}

	It("keeps namespaces apart: a message published in one namespace reaches only that namespace's subscribers", func() {
		if fx.IsolatedNamespace == "" {
			Skip("the fixture has no second namespace on the proxy")
		}
		iso := target.Target{Via: target.Proxy, Namespace: fx.IsolatedNamespace, Conn: fx.Target.Conn}
		pats, err := namespacePatterns(fx.Ctx(), fx.Proxy, iso.Namespace)
		fixture.Harness(err, "read the patterns of %q", iso.Namespace)
		if !slices.Contains(pats, "pubsub") {
			Skip(fmt.Sprintf("the second namespace %q serves %v, not pubsub", iso.Namespace, pats))
		}
		topic := fx.Prefix() + "isolated"
		a := subscribe(fx.Target, fx.Timeouts.Call, topic, "")
		b := subscribe(iso, fx.Timeouts.Call, topic, "")
		publish(fx.Target, topic, "in "+fx.Target.Namespace)
		publish(iso, topic, "in "+iso.Namespace)
		Expect(next(b, "subscriber in "+iso.Namespace)).To(Equal("in "+iso.Namespace),
			"the first message a subscriber to %q in %q gets", topic, iso.Namespace)
		Expect(next(a, "subscriber in "+fx.Target.Namespace)).To(Equal("in "+fx.Target.Namespace),
			"the first message a subscriber to %q in %q gets", topic, fx.Target.Namespace)
		By("publishing a marker in each namespace: nothing from the other comes before it")
		publish(fx.Target, topic, "marker")
		publish(iso, topic, "marker")
		Expect(next(a, "subscriber in "+fx.Target.Namespace)).To(Equal("marker"), "the message after the first in %q", fx.Target.Namespace)
		Expect(next(b, "subscriber in "+iso.Namespace)).To(Equal("marker"), "the message after the first in %q", iso.Namespace)
	})

	It("ends the plugin's subscription when a client cancels its Subscribe: its queue group's other member gets every later message",
		Label(string(capability.PubSubQueue)), func() {
			topic := fx.Prefix() + "cancel"
			group := "g" + notNameRE.ReplaceAllString(fx.Prefix(), "-")
			gone := subscribe(fx.Target, fx.Timeouts.Call, topic, group)
			stays := subscribe(fx.Target, fx.Timeouts.Call, topic, group)
			gone.cancel()
			Eventually(gone.messages).WithTimeout(fx.Timeouts.Call).Should(BeClosed(), "the cancelled Subscribe ends on the client")

			// A message the group gives the cancelled member is lost: once
			// the proxy has ended that member's subscription in the plugin,
			// every message reaches the member that stays. Until then a
			// round of messages may miss it, so rounds repeat.
			const perRound = 16
			round := 0
			roundReaches := func(wait time.Duration) error {
				round++
				want := map[string]bool{}
				for i := range perRound {
					p := fmt.Sprintf("round %d message %d", round, i)
					want[p] = true
					publish(fx.Target, topic, p)
				}
				deadline := time.After(wait)
				for len(want) > 0 {
					select {
					case m, ok := <-stays.messages:
						if !ok {
							StopTrying(fmt.Sprintf("the remaining member's subscription ended: %v", stays.err)).Now()
						}
						delete(want, string(m.GetPayload()))
					case <-deadline:
						return fmt.Errorf("round %d: %d of %d messages did not reach the remaining member within %v (another member still gets its share)", round, len(want), perRound, wait)
					}
				}
				return nil
			}
			Eventually(func() error { return roundReaches(2 * time.Second) }).WithTimeout(fx.Timeouts.Eventually).WithPolling(time.Millisecond).
				Should(Succeed(), "after the member %q cancelled its Subscribe", group)
			Expect(roundReaches(fx.Timeouts.Call)).To(Succeed(), "the round after the first that reached the remaining member whole")
		})

	It("ends an open Subscribe with Unavailable within the drain deadline when SIGTERMed, and exits 0", Label("fault:proxy-sigterm"), func() {
		if fx.LaunchProxy == nil {
			Skip("the fixture cannot launch another proxy")
		}
		px := launchProxy(fx, "start a second proxy to SIGTERM")
		topic := fx.Prefix() + "drain"
		sub := subscribe(px.Target(fx.Target.Namespace), fx.Timeouts.Call, topic, "")
		drain := px.Options().DrainTimeout

		By("sending SIGTERM with the subscription open")
		start := time.Now()
		Expect(px.Terminate()).To(Succeed())
		Eventually(sub.messages).WithTimeout(drain+fx.Timeouts.Call).Should(BeClosed(), "the open Subscribe ends")
		took := time.Since(start)
		Expect(sub.err).To(fixture.HaveCode(codes.Unavailable), "how the open Subscribe ends when the proxy drains")
		Expect(took).To(BeNumerically("<", drain), "the open Subscribe must end within the drain deadline (%v), not when it has passed", drain)
		Eventually(px.Exited()).WithTimeout(fx.Timeouts.Eventually).Should(BeClosed(), "the proxy exits after draining")
		Expect(px.ExitCode()).To(Equal(0), "exit code after SIGTERM; stderr:\n%s", px.Stderr())
	})
}
