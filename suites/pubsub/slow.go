package pubsub

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/target"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// Sizes of the slow-consumer spec: it publishes slowMessages payloads of
// slowPayload bytes (256 MiB in all) while one subscriber reads nothing.
const (
	slowPayload  = 64 << 10
	slowMessages = 4096
	// memorySlack is what plugin memory may grow by beyond twice the declared
	// buffer: garbage not yet collected, gRPC and backend client buffers.
	memorySlack = 96 << 20
)

func describeSlowConsumer(sess func() *session) {
	Context("slow consumer", basic, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		It("handles a subscriber that stops reading by its declared policy, without stalling other subscribers or the publisher, and with bounded plugin memory", func() {
			pol := s.fx.Description.GetSlowConsumer()
			Expect(pol.GetMode()).NotTo(Equal(lifecyclev1.SlowConsumerPolicy_MODE_UNSPECIFIED),
				"a plugin declaring pubsub.basic must declare its slow-consumer policy in Describe")
			Expect(pol.GetBufferMessages()).To(BeNumerically(">", 0), "slow_consumer.buffer_messages")
			Expect(pol.GetBufferBytes()).To(BeNumerically(">", 0), "slow_consumer.buffer_bytes")
			block := pol.GetMode() == lifecyclev1.SlowConsumerPolicy_MODE_BLOCK_PUBLISHER
			// A publisher held up by the slow subscriber would wait until it
			// reads, i.e. until the call deadline; half of it is the bound
			// beyond the policy's own wait, leaving room for a loaded machine.
			allowed := s.fx.Timeouts.Call / 2
			if block {
				Expect(pol.GetBlockTimeout()).NotTo(BeNil(), "slow_consumer.block_timeout must be declared with MODE_BLOCK_PUBLISHER")
				allowed += pol.GetBlockTimeout().AsDuration()
			}
			size := int(min(int64(slowPayload), s.fx.Description.GetLimits().GetMaxPayloadBytes()))

			topic := s.topic("slow")
			slow := s.MustSubscribe(topic) // reads nothing until the end
			fast := s.MustSubscribe(topic).collect()

			pid, where := s.pluginPID()
			mem := startMemorySampler(pid, where)
			payload := make([]byte, size)
			window := s.window(size)
			var maxStall time.Duration
			for published := 0; published < slowMessages; {
				end := min(published+window, slowMessages)
				for ; published < end; published++ {
					binary.BigEndian.PutUint64(payload, uint64(published))
					t0 := time.Now()
					_, err := s.ps.Publish(s.ctx(), &pubsubv1.PublishRequest{Topic: topic, Payload: payload})
					maxStall = max(maxStall, time.Since(t0))
					Expect(err).NotTo(HaveOccurred(), "Publish %d while a subscriber is not reading", published)
				}
				fast.WaitCount(published, s.fx.Timeouts.Eventually, "the subscriber that reads")
			}
			growth, measured := mem.stop()
			AddReportEntry("longest publish", maxStall.String())

			Expect(maxStall).To(BeNumerically("<=", allowed),
				"a Publish waited %v; the declared policy (%s) allows %v", maxStall, pol.GetMode(), allowed)
			Expect(fast.Count()).To(Equal(slowMessages), "the subscriber that reads got extra messages")

			// The slow subscriber reads now.
			var seqs []uint64
			var dropped int64
			var end error
			for range slowMessages + 1000 {
				ev, err := slow.recv(s.fx.Timeouts.Eventually)
				if err != nil {
					end = err
					break
				}
				if d := ev.GetDropped(); d != nil {
					Expect(d.GetCount()).To(BeNumerically(">", 0), "a Dropped event must count at least one message")
					dropped += d.GetCount()
					continue
				}
				m := ev.GetMessage()
				Expect(m).NotTo(BeNil(), "unexpected event %v", ev)
				Expect(m.GetPayload()).To(HaveLen(size))
				seqs = append(seqs, binary.BigEndian.Uint64(m.GetPayload()))
				if !block && seqs[len(seqs)-1] == slowMessages-1 {
					break
				}
			}
			seen := map[uint64]bool{}
			for _, q := range seqs {
				Expect(seen[q]).To(BeFalse(), "message %d delivered twice to the slow subscriber", q)
				seen[q] = true
			}
			if block {
				Expect(status.Code(end)).To(Equal(codes.ResourceExhausted),
					"under MODE_BLOCK_PUBLISHER a subscriber that does not read must be ended with ResourceExhausted; got %v", end)
				Expect(dropped).To(BeZero(), "MODE_BLOCK_PUBLISHER must not drop messages")
				for q := range uint64(len(seqs)) {
					Expect(seen[q]).To(BeTrue(), "message %d was lost before the slow subscriber was ended", q)
				}
			} else {
				Expect(end).NotTo(HaveOccurred(), "under MODE_DROP_OLDEST the slow subscriber stays subscribed")
				Expect(int64(len(seqs))+dropped).To(Equal(int64(slowMessages)),
					"the slow subscriber received %d messages and was told of %d dropped; %d were published", len(seqs), dropped, slowMessages)
				Expect(seen[slowMessages-1]).To(BeTrue(), "drop-oldest must keep the newest message")
			}

			if pid > 0 && s.fx.Target.Via == target.Proxy {
				now, err := s.fx.Proxy.PluginPID(s.ctx(), s.fx.Target.Namespace)
				Expect(err).NotTo(HaveOccurred(), "the plugin behind the proxy after the slow-consumer run")
				Expect(now).To(Equal(pid), "the plugin behind the proxy was restarted during the slow-consumer run")
			}
			if !measured {
				AddReportEntry("plugin RSS growth", "not measured: "+mem.why)
				Skip("the plugin memory bound could not be measured (" + mem.why + "); every other check of this spec passed")
			}
			bound := 2*pol.GetBufferBytes() + memorySlack
			AddReportEntry("plugin RSS growth", fmt.Sprintf("%.1f MiB (bound %.1f MiB)", float64(growth)/(1<<20), float64(bound)/(1<<20)))
			Expect(growth).To(BeNumerically("<=", bound),
				"plugin RSS grew by %.1f MiB while %d MiB were published past a subscriber that does not read; the declared buffer is %.1f MiB",
				float64(growth)/(1<<20), slowMessages*int64(size)>>20, float64(pol.GetBufferBytes())/(1<<20))
		})
	})
}

// pluginPID returns the process id of the plugin the spec's target reaches,
// and where it came from, or 0 and why it is unknown. Through the proxy it
// asks the proxy's /status; a proxy that cannot answer is a harness error.
func (s *session) pluginPID() (int, string) {
	GinkgoHelper()
	if s.fx.Target.Via == target.Proxy {
		if s.fx.Proxy == nil {
			return 0, "the target goes through a proxy the fixture does not describe, so the plugin process behind it is unknown"
		}
		pid, err := s.fx.Proxy.PluginPID(s.ctx(), s.fx.Target.Namespace)
		fixture.Harness(err, "find the plugin process behind the proxy in its /status")
		return pid, fmt.Sprintf("the proxy's plugin for %q", s.fx.Target.Namespace)
	}
	if s.fx.PluginPID <= 0 {
		return 0, "the fixture gives no plugin process id (Fixture.PluginPID)"
	}
	return s.fx.PluginPID, "the plugin under test"
}

// memorySampler samples a process's resident set size.
type memorySampler struct {
	pid  int
	why  string // why nothing is measured (pid 0)
	base int64
	stopCh,
	done chan struct{}
	mu   sync.Mutex
	peak int64
}

// startMemorySampler samples pid's RSS every 10 ms; pid 0 samples nothing
// (where then says why). where names the process otherwise.
func startMemorySampler(pid int, where string) *memorySampler {
	m := &memorySampler{pid: pid, why: where, stopCh: make(chan struct{}), done: make(chan struct{})}
	if pid <= 0 {
		close(m.done)
		return m
	}
	base, err := rss(pid)
	if err != nil {
		m.pid, m.why = 0, fmt.Sprintf("cannot read the resident set size of %s (pid %d): %v", where, pid, err)
		close(m.done)
		return m
	}
	m.base, m.peak = base, base
	go func() {
		defer close(m.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stopCh:
				return
			case <-t.C:
				if v, err := rss(pid); err == nil {
					m.mu.Lock()
					m.peak = max(m.peak, v)
					m.mu.Unlock()
				}
			}
		}
	}()
	return m
}

// stop ends sampling and returns the peak growth over the baseline, and
// whether anything was measured.
func (m *memorySampler) stop() (int64, bool) {
	if m.pid <= 0 {
		return 0, false
	}
	close(m.stopCh)
	<-m.done
	if v, err := rss(m.pid); err == nil {
		m.peak = max(m.peak, v)
	}
	return m.peak - m.base, true
}

// rss returns VmRSS of pid in bytes, from /proc/<pid>/status.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n << 10, err
			}
		}
	}
	return 0, fmt.Errorf("read rss of %d: no VmRSS line", pid)
}
