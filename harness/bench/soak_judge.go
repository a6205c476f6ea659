package bench

import (
	"context"
	"time"
)

// RSSFlatness is the judgement of a series of RSS samples: Base is the
// highest sample of the first third after warm-up, Peak the highest of
// the rest, Growth = Peak/Base − 1.
type RSSFlatness struct {
	Base   int64   `json:"base_bytes"`
	Peak   int64   `json:"peak_bytes"`
	Growth float64 `json:"growth"`
	Flat   bool    `json:"flat"`
}

// JudgeRSS judges samples (bytes, in time order) after the first warm of
// them: flat when no later sample exceeds the first third's highest by more
// than tolerance (0.10 is 10 %).
// Fewer than three samples after warm-up are never flat: there is nothing
// to judge.
func JudgeRSS(samples []int64, warm int, tolerance float64) RSSFlatness {
	after := samples[min(warm, len(samples)):]
	third := (len(after) + 2) / 3
	var r RSSFlatness
	for i, s := range after {
		if i < third {
			r.Base = max(r.Base, s)
		} else {
			r.Peak = max(r.Peak, s)
		}
	}
	if r.Base > 0 {
		r.Growth = float64(r.Peak)/float64(r.Base) - 1
	}
	r.Flat = len(after) >= 3 && r.Peak <= r.Base+int64(float64(r.Base)*tolerance)
	return r
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
