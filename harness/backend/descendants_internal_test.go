package backend

import (
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestDescendants: a server's worker processes in sessions of their own
// (as postgres's are) are found, so pause and kill reach them.
func TestDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "setsid sleep 30 & sleep 30 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("sh: %v", err)
	}
	t.Cleanup(func() {
		for _, pid := range descendants(cmd.Process.Pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var kids []int
	deadline := time.Now().Add(10 * time.Second)
	for len(kids) < 2 && time.Now().Before(deadline) {
		kids = descendants(cmd.Process.Pid)
		time.Sleep(5 * time.Millisecond)
	}
	if len(kids) < 2 {
		t.Fatalf("descendants(%d) = %v, want the two sleeps", cmd.Process.Pid, kids)
	}
	if slices.Contains(kids, cmd.Process.Pid) {
		t.Errorf("descendants(%d) = %v includes the process itself", cmd.Process.Pid, kids)
	}
}
