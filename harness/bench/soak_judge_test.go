package bench_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prism-suite/prism/harness/bench"
)

func TestJudgeRSS(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name             string
		samples          []int64
		warm             int
		flat             bool
		base, late, peak int64
	}{
		{"warm-up growth is not judged", []int64{10 * mib, 20 * mib, 40 * mib, 40 * mib, 41 * mib, 40 * mib, 42 * mib, 41 * mib, 43 * mib}, 3, true, 41 * mib, 43 * mib, 43 * mib},
		{"a garbage collector's saw-tooth is flat", []int64{5 * mib, 40 * mib, 36 * mib, 42 * mib, 37 * mib, 41 * mib, 36 * mib, 42 * mib, 38 * mib}, 1, true, 40 * mib, 38 * mib, 42 * mib},
		{"a burst that passes is flat", []int64{40 * mib, 40 * mib, 41 * mib, 40 * mib, 70 * mib, 55 * mib, 41 * mib, 40 * mib, 41 * mib}, 0, true, 40 * mib, 41 * mib, 70 * mib},
		{"a leak is not flat", []int64{5 * mib, 40 * mib, 41 * mib, 42 * mib, 43 * mib, 44 * mib, 45 * mib, 46 * mib, 47 * mib}, 1, false, 41 * mib, 46 * mib, 47 * mib},
		{"a step up that stays is not flat", []int64{40 * mib, 39 * mib, 41 * mib, 40 * mib, 47 * mib, 48 * mib, 47 * mib, 46 * mib, 48 * mib}, 0, false, 40 * mib, 47 * mib, 48 * mib},
		{"exactly at the tolerance is flat", []int64{100, 100, 110, 110}, 0, true, 100, 110, 110},
		{"too few samples after warm-up is not flat", []int64{40 * mib, 40 * mib, 40 * mib}, 2, false, 40 * mib, 40 * mib, 40 * mib},
		{"no sample after warm-up is not flat", []int64{40 * mib}, 2, false, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bench.JudgeRSS(tc.samples, tc.warm, 0.10)
			if got.Flat != tc.flat || got.Base != tc.base || got.Late != tc.late || got.Peak != tc.peak {
				t.Errorf("JudgeRSS(%v, %d) = %+v, want flat %v base %d late %d peak %d", tc.samples, tc.warm, got, tc.flat, tc.base, tc.late, tc.peak)
			}
		})
	}
}

// counts returns a read function that answers each count in turn, then the
// last one again.
func counts(cs ...int) func(context.Context) (int, error) {
	i := 0
	return func(context.Context) (int, error) {
		c := cs[min(i, len(cs)-1)]
		i++
		return c, nil
	}
}

func TestWaitGoroutines(t *testing.T) {
	ctx := context.Background()
	last, back, err := bench.WaitGoroutines(ctx, counts(900, 400, 31, 30), 30, time.Second, time.Millisecond)
	if err != nil || !back || last != 30 {
		t.Errorf("falling to the start count: got last %d back %v err %v, want 30 true nil", last, back, err)
	}
	last, back, err = bench.WaitGoroutines(ctx, counts(900, 29), 30, time.Second, time.Millisecond)
	if err != nil || !back || last != 29 {
		t.Errorf("falling below the start count: got last %d back %v err %v, want 29 true nil", last, back, err)
	}
	start := time.Now()
	last, back, err = bench.WaitGoroutines(ctx, counts(900, 40, 31), 30, 50*time.Millisecond, time.Millisecond)
	if err != nil || back || last != 31 {
		t.Errorf("staying above the start count: got last %d back %v err %v, want 31 false nil", last, back, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the wait took %v, want it bounded by 50ms (and a poll)", d)
	}
	boom := errors.New("boom")
	_, back, err = bench.WaitGoroutines(ctx, func(context.Context) (int, error) { return 0, boom }, 30, 50*time.Millisecond, time.Millisecond)
	if !errors.Is(err, boom) || back {
		t.Errorf("a failing read: got back %v err %v, want false and the read's error", back, err)
	}
}

func TestGoroutinesOf(t *testing.T) {
	n, err := bench.GoroutinesOf("# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 42\n# TYPE go_threads gauge\ngo_threads 7\n")
	if err != nil || n != 42 {
		t.Errorf("GoroutinesOf = %d, %v; want 42, nil", n, err)
	}
	if _, err := bench.GoroutinesOf("# TYPE go_threads gauge\ngo_threads 7\n"); err == nil {
		t.Error("GoroutinesOf without go_goroutines: got no error")
	}
}
