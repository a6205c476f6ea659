package proxy

import (
	"runtime/debug"
	"testing"
)

func TestSetGCPercentLeavesAnExplicitGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	setGCPercent()
	if got := debug.SetGCPercent(100); got != DefaultGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, DefaultGCPercent)
	}
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // as the runtime does at start from GOGC
	setGCPercent()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("GOGC=150: GC percent %d, want 150 (the environment's)", got)
	}
}
