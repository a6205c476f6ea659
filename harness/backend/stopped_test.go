package backend_test

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/prism-suite/prism/harness/backend"
)

func TestWaitStopped(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid

	err := backend.WaitStopped(pid, 50*time.Millisecond)
	var he *backend.HarnessError
	if !errors.As(err, &he) {
		t.Fatalf("WaitStopped of a running process = %v, want a harness error after the timeout", err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := backend.WaitStopped(pid, 5*time.Second); err != nil {
		t.Fatalf("WaitStopped after SIGSTOP: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := backend.WaitStopped(pid, 50*time.Millisecond); !errors.As(err, &he) {
		t.Fatalf("WaitStopped after SIGCONT = %v, want a harness error", err)
	}
}
