package pubsub

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/nemesis"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// faultCluster labels the specs that need a cluster instance.
var faultCluster = Label("fault:cluster")

// clusterRecover bounds one harness step on the cluster (a kill, a restart,
// the wait until it is healthy) and the delivery after the heal.
const clusterRecover = 60 * time.Second

// describeCluster registers the durable specs that kill nodes of a cluster
// instance. Which node leads the plugin's stream is the plugin's business
// (its config names the stream), so every node is killed in turn: the
// leader is one of them.
func describeCluster(sess func() *session) {
	Context("cluster", durable, faultCluster, func() {
		// clusterOf is the run's cluster, or a skip saying why there is none.
		clusterOf := func(s *session) nemesis.Cluster {
			c, ok := s.fx.Backend.(nemesis.Cluster)
			if !ok {
				info := s.fx.Backend.Info()
				Skip(fmt.Sprintf("the %s backend via %s is one server, not a cluster (--topology cluster)", info.Kind, info.Provider))
			}
			return c
		}
		// inject injects one fault; a spec that fails before heal leaves
		// nothing broken (the cleanup heals, once).
		inject := func(c nemesis.Cluster, kind nemesis.Kind, node string) *nemesis.Fault {
			GinkgoHelper()
			ctx, cancel := context.WithTimeout(context.Background(), clusterRecover)
			f, err := nemesis.Inject(ctx, c, kind, node)
			cancel()
			DeferCleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), clusterRecover)
				defer cancel()
				_, _ = f.Heal(ctx)
			})
			Expect(err).NotTo(HaveOccurred(), "harness")
			return f
		}
		// heal heals the fault, waits until the cluster is healthy and
		// reports the event.
		heal := func(f *nemesis.Fault) {
			GinkgoHelper()
			ctx, cancel := context.WithTimeout(context.Background(), clusterRecover)
			defer cancel()
			e, err := f.Heal(ctx)
			b, _ := json.Marshal(e)
			AddReportEntry(fixture.ReportEntryNemesis, string(b))
			Expect(err).NotTo(HaveOccurred(), "harness: heal %s of %s and wait until the cluster is healthy", e.Kind, e.Node)
		}
		// publisher publishes to topic and keeps the ids acknowledged to it;
		// during a fault a Publish may fail with Unavailable or
		// DeadlineExceeded (the message is then not promised), never otherwise.
		type publisher struct {
			s     *session
			topic string
			acked []string
		}
		publish := func(p *publisher, what string, n int) {
			for i := range n {
				resp, err := p.s.ps.Publish(p.s.ctx(), &pubsubv1.PublishRequest{Topic: p.topic, Payload: []byte(fmt.Sprintf("%s-%d", what, i))})
				switch code := status.Code(err); code {
				case codes.OK:
					p.acked = append(p.acked, resp.GetId())
				case codes.Unavailable, codes.DeadlineExceeded:
				default:
					Fail(fmt.Sprintf("Publish during %s failed with %v, want Unavailable or DeadlineExceeded: %v", what, code, err))
				}
			}
		}
		// expectAllDelivered resumes the durable subscription and waits until
		// every acknowledged message is delivered.
		expectAllDelivered := func(p *publisher, durableName string, ackWait time.Duration, after string) {
			AddReportEntry(fixture.ReportEntryNemesis+".published", fmt.Sprintf("%d messages acknowledged to the publisher", len(p.acked)))
			resumed, err := p.s.subscribeDurable(p.topic, durableName, ackWait)
			Expect(err).NotTo(HaveOccurred(), "Subscribe durable to %q again after %s", p.topic, after)
			got := resumed.collect()
			Eventually(func() []string {
				var missing []string
				have := map[string]bool{}
				for _, m := range got.Messages() {
					have[m.GetId()] = true
				}
				for _, id := range p.acked {
					if !have[id] {
						missing = append(missing, id)
					}
				}
				return missing
			}).WithTimeout(clusterRecover).WithPolling(100*time.Millisecond).Should(BeEmpty(),
				"messages acknowledged to the publisher before or during %s must all be delivered", after)
		}
		const ackWait = 30 * time.Second

		It("delivers every message acknowledged to its publisher while each node in turn, the stream's leader among them, is killed and restarted", func() {
			s := sess()
			c := clusterOf(s)
			p := &publisher{s: s, topic: s.topic("cluster-durable")}
			sub, err := s.subscribeDurable(p.topic, "survivor", ackWait)
			Expect(err).NotTo(HaveOccurred(), "Subscribe durable to %q", p.topic)
			// The durable consumer exists from here; it keeps what is
			// published while no subscription is open.
			sub.collect().leave(s.fx.Timeouts.Eventually, "the first subscription")

			ctx, cancel := context.WithTimeout(context.Background(), clusterRecover)
			nodes, err := c.Nodes(ctx)
			cancel()
			Expect(err).NotTo(HaveOccurred(), "harness: list the cluster's nodes")

			publish(p, "before", 10)
			for _, n := range nodes {
				f := inject(c, nemesis.Kill, n.ID)
				publish(p, "kill of "+n.ID, 5)
				heal(f)
			}
			expectAllDelivered(p, "survivor", ackWait, "the kills")
		})

		It("delivers every message acknowledged to its publisher while the stream's leader is partitioned away, and publishes again after the heal", func() {
			s := sess()
			c := clusterOf(s)
			if ok, why := c.Supports(nemesis.Partition); !ok {
				Skip("this cluster cannot be partitioned: " + why)
			}
			p := &publisher{s: s, topic: s.topic("cluster-partition")}
			sub, err := s.subscribeDurable(p.topic, "islander", ackWait)
			Expect(err).NotTo(HaveOccurred(), "Subscribe durable to %q", p.topic)
			sub.collect().leave(s.fx.Timeouts.Eventually, "the first subscription")
			publish(p, "before", 10)

			ctx, cancel := context.WithTimeout(context.Background(), clusterRecover)
			defer cancel()
			// The topic's stream is the plugin's business; the cluster finds
			// the only replicated message stream's leader.
			leader, err := c.Leader(ctx, p.topic)
			Expect(err).NotTo(HaveOccurred(), "harness: find the leader of the stream behind %q", p.topic)
			f := inject(c, nemesis.Partition, leader)
			publish(p, "partition of "+leader, 10)
			heal(f)

			// After the heal the plugin serves again within the recovery bound.
			Eventually(func() error {
				_, err := s.ps.Publish(s.ctx(), &pubsubv1.PublishRequest{Topic: p.topic, Payload: []byte("after")})
				return err
			}).WithTimeout(clusterRecover).WithPolling(200*time.Millisecond).Should(Succeed(),
				"Publish after the partition of %s was healed", leader)
			publish(p, "after the heal", 5)
			expectAllDelivered(p, "islander", ackWait, "the partition")
		})
	})
}
