package backend

import (
	"testing"
	"time"
)

// TestNextTickBacksOffWithTheCostOfAnAdvance: the ticker of the embedded
// Redis keeps to ttlTick while an advance is cheap, and holds miniredis's
// lock at most ttlShare of the time when it is not (many keys to sort).
func TestNextTickBacksOffWithTheCostOfAnAdvance(t *testing.T) {
	for _, tc := range []struct{ cost, want time.Duration }{
		{0, ttlTick},
		{time.Millisecond, ttlTick},
		{ttlTick / 9, ttlTick},
		{5 * time.Millisecond, 45 * time.Millisecond},
		{20 * time.Millisecond, 180 * time.Millisecond},
	} {
		got := nextTick(tc.cost)
		if got != tc.want {
			t.Errorf("nextTick(%v) = %v, want %v", tc.cost, got, tc.want)
		}
		if share := float64(tc.cost) / float64(tc.cost+got); share > ttlShare+1e-9 {
			t.Errorf("nextTick(%v) = %v: the ticker would hold the lock %.0f%% of the time", tc.cost, got, share*100)
		}
	}
}
