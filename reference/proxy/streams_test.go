package proxy

import (
	"context"
	"testing"
)

// TestStreamSetEndAll: endAll ends every open stream and every stream added
// after it; a stream forgotten before it is left alone.
func TestStreamSetEndAll(t *testing.T) {
	var s streamSet
	ctxOpen, cancelOpen := context.WithCancel(context.Background())
	openEnded, _ := s.add(cancelOpen)
	ctxGone, cancelGone := context.WithCancel(context.Background())
	defer cancelGone()
	goneEnded, forget := s.add(cancelGone)
	forget()
	if n := s.endAll(); n != 1 {
		t.Errorf("endAll ended %d streams, want 1", n)
	}
	if ctxOpen.Err() == nil || !openEnded.Load() {
		t.Error("the open stream was not ended")
	}
	if ctxGone.Err() != nil || goneEnded.Load() {
		t.Error("a forgotten stream was ended")
	}
	ctxLate, cancelLate := context.WithCancel(context.Background())
	lateEnded, _ := s.add(cancelLate)
	if ctxLate.Err() == nil || !lateEnded.Load() {
		t.Error("a stream added after endAll was not ended")
	}
}
