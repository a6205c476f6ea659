package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
	"google.golang.org/grpc"

	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/harness/target"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// Soak figures and bounds.
const (
	// SoakRSSTolerance is how much RSS may grow after warm-up and still be flat.
	SoakRSSTolerance = 0.10
	// soakCallTimeout bounds each call of a soak client.
	soakCallTimeout = 5 * time.Second
	// soakGoroutineWait bounds the wait for the proxy's goroutines to come
	// back to their start count once the clients have left.
	soakGoroutineWait = 10 * time.Second
)

// SoakResult is one soak series: Clients clients on Conns connections
// calling Set and Get through the proxy for Duration, with the RSS of the
// proxy and the plugin sampled every SampleEvery and the proxy's goroutines
// read from its /metrics (go_goroutines) before, during and after.
type SoakResult struct {
	Namespace string `json:"namespace"`
	Clients   int    `json:"clients"`
	Conns     int    `json:"connections"`
	// Interval is each client's time between calls (0: a closed loop).
	Interval    time.Duration `json:"interval_ns"`
	Duration    time.Duration `json:"duration_ns"`
	WarmUp      time.Duration `json:"warm_up_ns"`
	SampleEvery time.Duration `json:"sample_every_ns"`
	Ops         int64         `json:"ops"`
	Errors      int64         `json:"errors"`
	FirstError  string        `json:"first_error,omitempty"`
	// FirstErrorAt is when the first error came, from the clients' start.
	FirstErrorAt time.Duration `json:"first_error_at_ns,omitempty"`
	// ProxyRSS and PluginRSS are the VmRSS samples (bytes) of the proxy
	// process and the plugin process, in time order from the clients' start.
	ProxyRSS        []int64     `json:"proxy_rss_bytes"`
	PluginRSS       []int64     `json:"plugin_rss_bytes"`
	ProxyRSSJudged  RSSFlatness `json:"proxy_rss"`
	PluginRSSJudged RSSFlatness `json:"plugin_rss"`
	// GoroutinesStart is the proxy's count before the clients connected,
	// GoroutinesPeak the highest sampled while they ran, GoroutinesEnd the
	// last read after they left (within soakGoroutineWait).
	GoroutinesStart int  `json:"goroutines_start"`
	GoroutinesPeak  int  `json:"goroutines_peak"`
	GoroutinesEnd   int  `json:"goroutines_end"`
	GoroutinesBack  bool `json:"goroutines_back"`
	// Met: no error, both RSS flat, goroutines back.
	Met bool `json:"met"`
	// Problem says what kept the soak from judging (a sample it could not take).
	Problem string `json:"problem,omitempty"`
}

// Soak runs clients clients for d through px on namespace ns, spread over
// conns connections of their own, each calling Set and Get of its own keys
// in turn, one call per interval (0: in a closed loop), each call bounded
// by soakCallTimeout. The first fifth of d is warm-up: RSS is judged on the
// samples after it. The proxy's goroutines are read before the clients
// connect and, once they have closed their connections, until they are
// back to that count (at most soakGoroutineWait).
func Soak(ctx context.Context, px *hproxy.Proxy, ns string, clients, conns int, interval, d time.Duration) SoakResult {
	every := max(d/60, 100*time.Millisecond)
	r := SoakResult{Namespace: ns, Clients: clients, Conns: conns, Interval: interval, Duration: d, WarmUp: d / 5, SampleEvery: every}
	fail := func(err error) SoakResult {
		r.Problem = err.Error()
		return r
	}
	pluginPID, err := px.PluginPID(ctx, ns)
	if err != nil {
		return fail(err)
	}
	goroutines := func(ctx context.Context) (int, error) { return ProxyGoroutines(ctx, px) }
	if r.GoroutinesStart, err = goroutines(ctx); err != nil {
		return fail(err)
	}
	ccs := make([]*grpc.ClientConn, conns)
	for i := range ccs {
		if ccs[i], err = target.Dial(px.Addr); err != nil {
			for _, c := range ccs[:i] {
				_ = c.Close()
			}
			return fail(err)
		}
	}
	closeAll := func() {
		for _, c := range ccs {
			_ = c.Close()
		}
	}

	var (
		ops, errs atomic.Int64
		first     atomic.Value
		wg        sync.WaitGroup
	)
	begin := time.Now()
	var firstAt atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	end, _ := rctx.Deadline()
	value := make([]byte, ValueSize)
	for c := range clients {
		kv := target.Target{Via: target.Proxy, Namespace: ns, Conn: ccs[c%conns]}.KeyValue()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Clients start spread over one interval, so their calls do not
			// arrive in lockstep.
			next := time.Now().Add(interval * time.Duration(c) / time.Duration(clients))
			timer := time.NewTimer(0)
			defer timer.Stop()
			for i := 0; ; i++ {
				if interval > 0 {
					timer.Reset(time.Until(next))
					select {
					case <-rctx.Done():
						return
					case <-timer.C:
					}
					// A client that fell behind does not catch up in a burst.
					if next = next.Add(interval); next.Before(time.Now()) {
						next = time.Now()
					}
				}
				if rctx.Err() != nil {
					return
				}
				key := fmt.Sprintf("soak:%d:%d", c, (i/2)%8)
				cctx, ccancel := context.WithTimeout(rctx, soakCallTimeout)
				var err error
				if i%2 == 0 {
					_, err = kv.Set(cctx, &keyvaluev1.SetRequest{Key: key, Value: value})
				} else {
					_, err = kv.Get(cctx, &keyvaluev1.GetRequest{Key: key})
				}
				ccancel()
				if err != nil {
					// The soak ended under the call: gRPC fails a call whose
					// deadline has passed before the context's own timer
					// fires, so the clock decides, not rctx.Err alone.
					if rctx.Err() != nil || !time.Now().Before(end) {
						return
					}
					errs.Add(1)
					if first.CompareAndSwap(nil, err.Error()) {
						firstAt.Store(int64(time.Since(begin)))
					}
					continue
				}
				ops.Add(1)
			}
		}()
	}

	var problem error
	tick := time.NewTicker(every)
	sample := func() {
		if problem != nil {
			return
		}
		prss, err := ReadRSS(px.PID())
		if err != nil {
			problem = err
			return
		}
		lrss, err := ReadRSS(pluginPID)
		if err != nil {
			problem = err
			return
		}
		r.ProxyRSS, r.PluginRSS = append(r.ProxyRSS, prss), append(r.PluginRSS, lrss)
		if g, err := goroutines(rctx); err == nil {
			r.GoroutinesPeak = max(r.GoroutinesPeak, g)
		}
	}
loop:
	for {
		select {
		case <-rctx.Done():
			break loop
		case <-tick.C:
			sample()
		}
	}
	tick.Stop()
	wg.Wait()
	closeAll()
	r.Ops, r.Errors = ops.Load(), errs.Load()
	if f, ok := first.Load().(string); ok {
		r.FirstError, r.FirstErrorAt = f, time.Duration(firstAt.Load())
	}
	if problem != nil {
		return fail(problem)
	}
	warm := int(r.WarmUp / every)
	r.ProxyRSSJudged = JudgeRSS(r.ProxyRSS, warm, SoakRSSTolerance)
	r.PluginRSSJudged = JudgeRSS(r.PluginRSS, warm, SoakRSSTolerance)
	r.GoroutinesEnd, r.GoroutinesBack, err = WaitGoroutines(ctx, goroutines, r.GoroutinesStart, soakGoroutineWait, 50*time.Millisecond)
	if err != nil {
		return fail(err)
	}
	r.Met = r.Errors == 0 && r.Ops > 0 && r.ProxyRSSJudged.Flat && r.PluginRSSJudged.Flat && r.GoroutinesBack
	return r
}

// Goal is the soak's goal line.
func (r SoakResult) Goal() string {
	pace := "in a closed loop"
	if r.Interval > 0 {
		pace = fmt.Sprintf("one call per %v each", r.Interval)
	}
	head := fmt.Sprintf("P9 soak %s via proxy: %d clients × %v on %d connections, %s", r.Namespace, r.Clients, r.Duration, r.Conns, pace)
	if r.Problem != "" {
		return fmt.Sprintf("%s: not judged (%s): NOT MET", head, r.Problem)
	}
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	rss := func(j RSSFlatness) string {
		return fmt.Sprintf("median %s → %s (%+.1f%%, goal ≤ %+.0f%%; peak %s)", mib(j.Base), mib(j.Late), 100*j.Growth, 100*SoakRSSTolerance, mib(j.Peak))
	}
	errText := ""
	if r.FirstError != "" {
		errText = fmt.Sprintf(" (first at %v: %s)", r.FirstErrorAt.Round(time.Millisecond), r.FirstError)
	}
	return fmt.Sprintf("%s: %d ops (%.0f/s), %d errors%s; RSS after %v warm-up, first third → last third: proxy %s, plugin %s; proxy goroutines %d at start, %d peak, %d after the clients left: %s",
		head, r.Ops, float64(r.Ops)/r.Duration.Seconds(), r.Errors, errText, r.WarmUp, rss(r.ProxyRSSJudged), rss(r.PluginRSSJudged),
		r.GoroutinesStart, r.GoroutinesPeak, r.GoroutinesEnd, met(r.Met))
}

// ReadRSS returns the resident set size of process pid (VmRSS of
// /proc/<pid>/status), in bytes.
func ReadRSS(pid int) (int64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("read rss of %d: %w", pid, err)
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, fmt.Errorf("read rss of %d: %w", pid, err)
	}
	return int64(st.VmRSS), nil
}

// ProxyGoroutines reads go_goroutines from the proxy's /metrics.
func ProxyGoroutines(ctx context.Context, px *hproxy.Proxy) (int, error) {
	text, err := px.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	return GoroutinesOf(text)
}

// GoroutinesOf returns the go_goroutines gauge of a Prometheus text exposition.
func GoroutinesOf(text string) (int, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return 0, fmt.Errorf("parse proxy metrics: %w", err)
	}
	f := fams["go_goroutines"]
	if f == nil || len(f.GetMetric()) == 0 {
		return 0, fmt.Errorf("parse proxy metrics: no go_goroutines")
	}
	return int(f.GetMetric()[0].GetGauge().GetValue()), nil
}
