// Package bench measures latency and throughput: a closed-loop load
// generator, a one-hop gRPC echo server that serves as the baseline, and a
// table of results with ratios against the baseline measured in the same run.
// Nothing here is a pass/fail gate: figures are reported, never asserted.
package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one measured series.
type Result struct {
	Name        string        `json:"name"`
	Concurrency int           `json:"concurrency"`
	Ops         int64         `json:"ops"`
	Errors      int64         `json:"errors"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	P50         time.Duration `json:"p50_ns"`
	P99         time.Duration `json:"p99_ns"`
	OpsPerSec   float64       `json:"ops_per_sec"`
	// Baseline names the series this one is compared against.
	Baseline string `json:"baseline,omitempty"`
	// P50Ratio and ThroughputRatio compare with Baseline (this ÷ baseline).
	P50Ratio        float64 `json:"p50_ratio,omitempty"`
	ThroughputRatio float64 `json:"throughput_ratio,omitempty"`
	// FirstError is the first error seen, if any.
	FirstError string `json:"first_error,omitempty"`
}

// Load runs op on concurrency goroutines until total ops have run or d has
// passed, whichever is first, after warmup ops that are not measured.
func Load(ctx context.Context, name string, concurrency, total int, d time.Duration, op func(ctx context.Context, worker, i int) error) Result {
	for i := range min(total/10, 200) {
		_ = op(ctx, 0, -1-i)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var (
		next   atomic.Int64
		errs   atomic.Int64
		first  atomic.Value
		wg     sync.WaitGroup
		mu     sync.Mutex
		all    = make([]time.Duration, 0, total)
		starts = time.Now()
	)
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, total/concurrency+1)
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= total {
					break
				}
				t0 := time.Now()
				if err := op(ctx, w, i); err != nil {
					// gRPC fails a call whose deadline has passed before the
					// context's own timer fires: the clock decides, not ctx.Err.
					if ctx.Err() != nil || !time.Now().Before(deadline) {
						break
					}
					errs.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(starts)
	slices.Sort(all)
	r := Result{Name: name, Concurrency: concurrency, Ops: int64(len(all)), Errors: errs.Load(), Elapsed: elapsed}
	if len(all) > 0 {
		r.P50, r.P99 = sortedPercentile(all, 50), sortedPercentile(all, 99)
		r.OpsPerSec = float64(len(all)) / elapsed.Seconds()
	}
	if f, ok := first.Load().(string); ok {
		r.FirstError = f
	}
	return r
}

// Compare fills the ratios of r against base.
func (r *Result) Compare(base Result) {
	r.Baseline = base.Name
	if base.P50 > 0 {
		r.P50Ratio = float64(r.P50) / float64(base.P50)
	}
	if base.OpsPerSec > 0 {
		r.ThroughputRatio = r.OpsPerSec / base.OpsPerSec
	}
}

// Table renders results as a Markdown table.
func Table(rs []Result) string {
	s := "| series | conc | ops | errors | p50 | p99 | ops/s | vs | p50 × | ops/s × |\n|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n"
	for _, r := range rs {
		ratio := func(f float64) string {
			if f == 0 {
				return ""
			}
			return fmt.Sprintf("%.2f", f)
		}
		s += fmt.Sprintf("| %s | %d | %d | %d | %s | %s | %.0f | %s | %s | %s |\n", r.Name, r.Concurrency, r.Ops, r.Errors,
			us(r.P50), us(r.P99), r.OpsPerSec, r.Baseline, ratio(r.P50Ratio), ratio(r.ThroughputRatio))
	}
	return s
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d.Nanoseconds())/1000) }
