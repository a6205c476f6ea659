package proxy

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/bytedance/gopkg/util/gctuner"
)

// gcPercent reads the collector's target without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// waitGCPercent collects until the tuner, which runs after a collection,
// has set want, or fails after a deadline.
func waitGCPercent(t *testing.T, want int, why string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		if got := gcPercent(); got == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%s: GC percent %d, want %d", why, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTuneGCBoundsTheHeapAndLeavesAnExplicitGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer gctuner.Tuning(0)

	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // as the runtime does at start from GOGC
	tuneGC()
	runtime.GC()
	runtime.GC()
	if got := gcPercent(); got != 150 {
		t.Fatalf("GOGC=150: GC percent %d, want 150 (the environment's)", got)
	}

	t.Setenv("GOGC", "")
	tuneGC()
	waitGCPercent(t, 400, "a live heap of a few MiB")

	// A live heap past half the threshold: the collector must not let it
	// grow to five times its size.
	live := make([]byte, GCHeapThreshold/2+8<<20)
	for i := range live {
		live[i] = byte(i)
	}
	waitGCPercent(t, 100, "a live heap of 40 MiB (Go's default, at most twice the live heap)")
	runtime.KeepAlive(live)
	live = nil

	waitGCPercent(t, 400, "the live heap released")
}
