package bench

import (
	"context"
	"slices"
	"time"
)

// RSSFlatness is the judgement of a series of RSS samples after warm-up:
// Base is the median of its first third, Late the median of its last
// third, Growth = Late/Base − 1, and Peak the highest sample (for the
// record: bursts of calls raise the peak for a while, a leak raises the
// floor).
type RSSFlatness struct {
	Base   int64   `json:"base_bytes"`
	Late   int64   `json:"late_bytes"`
	Peak   int64   `json:"peak_bytes"`
	Growth float64 `json:"growth"`
	Flat   bool    `json:"flat"`
}

// JudgeRSS judges samples (bytes, in time order) after the first warm of
// them: flat when the median of the last third is at most the median of the
// first third grown by tolerance (0.10 is 10 %). Fewer than three samples
// after warm-up are never flat: there is nothing to judge.
func JudgeRSS(samples []int64, warm int, tolerance float64) RSSFlatness {
	after := samples[min(warm, len(samples)):]
	var r RSSFlatness
	if len(after) == 0 {
		return r
	}
	third := (len(after) + 2) / 3
	r.Base, r.Late, r.Peak = median(after[:third]), median(after[len(after)-third:]), slices.Max(after)
	if r.Base > 0 {
		r.Growth = float64(r.Late)/float64(r.Base) - 1
	}
	r.Flat = len(after) >= 3 && r.Late <= r.Base+int64(float64(r.Base)*tolerance)
	return r
}

// median returns the middle value of s (the upper one of an even count).
func median(s []int64) int64 {
	c := slices.Clone(s)
	slices.Sort(c)
	return c[len(c)/2]
}

// WaitGoroutines reads the goroutine count with read until it is at most
// start or within has passed, polling every poll; it returns the last count
// read and whether it came back to start.
func WaitGoroutines(ctx context.Context, read func(context.Context) (int, error), start int, within, poll time.Duration) (last int, back bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		n, err := read(ctx)
		if err != nil {
			if ctx.Err() != nil && last > 0 { // the read was cut by the deadline
				return last, false, nil
			}
			return last, false, err
		}
		if last = n; n <= start {
			return last, true, nil
		}
		select {
		case <-ctx.Done():
			return last, false, nil
		case <-t.C:
		}
	}
}
