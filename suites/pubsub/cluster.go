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
		It("delivers every message acknowledged to its publisher while each node in turn, the stream's leader among them, is killed and restarted", func() {
			s := sess()
			c, ok := s.fx.Backend.(nemesis.Cluster)
			if !ok {
				info := s.fx.Backend.Info()
				Skip(fmt.Sprintf("the %s backend via %s is one server, not a cluster (--topology cluster)", info.Kind, info.Provider))
			}
			topic := s.topic("cluster-durable")
			const ackWait = 30 * time.Second
			sub, err := s.subscribeDurable(topic, "survivor", ackWait)
			Expect(err).NotTo(HaveOccurred(), "Subscribe durable to %q", topic)
			// The durable consumer exists from here; it keeps what is
			// published while no subscription is open.
			sub.collect().leave(s.fx.Timeouts.Eventually, "the first subscription")

			ctx, cancel := context.WithTimeout(context.Background(), clusterRecover)
			nodes, err := c.Nodes(ctx)
			cancel()
			Expect(err).NotTo(HaveOccurred(), "harness: list the cluster's nodes")

			var acked []string
			publish := func(what string, n int) {
				for i := range n {
					resp, err := s.ps.Publish(s.ctx(), &pubsubv1.PublishRequest{Topic: topic, Payload: []byte(fmt.Sprintf("%s-%d", what, i))})
					switch code := status.Code(err); code {
					case codes.OK:
						acked = append(acked, resp.GetId())
					case codes.Unavailable, codes.DeadlineExceeded:
					default:
						Fail(fmt.Sprintf("Publish during %s failed with %v, want Unavailable or DeadlineExceeded: %v", what, code, err))
					}
				}
			}
			publish("before", 10)
			for _, n := range nodes {
				ctx, cancel := context.WithTimeout(context.Background(), clusterRecover)
				e := nemesis.Event{Kind: nemesis.Kill, Node: n.ID, Injected: time.Now()}
				Expect(c.Kill(ctx, n.ID)).To(Succeed(), "harness: kill %s", n.ID)
				DeferCleanup(func() {
					// A spec that failed midway leaves no node down.
					ctx, cancel := context.WithTimeout(context.Background(), clusterRecover)
					defer cancel()
					_ = c.Restart(ctx, n.ID)
				})
				publish("kill of "+n.ID, 5)
				Expect(c.Restart(ctx, n.ID)).To(Succeed(), "harness: restart %s", n.ID)
				e.Healed = time.Now()
				Expect(c.WaitHealthy(ctx)).To(Succeed(), "harness: the cluster is healthy again after the kill of %s", n.ID)
				e.Recovered = time.Now()
				cancel()
				b, _ := json.Marshal(e)
				AddReportEntry(fixture.ReportEntryNemesis, string(b))
			}
			AddReportEntry(fixture.ReportEntryNemesis+".published", fmt.Sprintf("%d messages acknowledged to the publisher", len(acked)))

			resumed, err := s.subscribeDurable(topic, "survivor", ackWait)
			Expect(err).NotTo(HaveOccurred(), "Subscribe durable to %q again after the kills", topic)
			got := resumed.collect()
			Eventually(func() []string {
				var missing []string
				have := map[string]bool{}
				for _, m := range got.Messages() {
					have[m.GetId()] = true
				}
				for _, id := range acked {
					if !have[id] {
						missing = append(missing, id)
					}
				}
				return missing
			}).WithTimeout(clusterRecover).WithPolling(100*time.Millisecond).Should(BeEmpty(),
				"messages acknowledged to the publisher before or during the kills must all be delivered")
		})
	})
}
