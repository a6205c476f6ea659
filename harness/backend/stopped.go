package backend

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WaitStopped polls /proc until every thread of process pid is stopped
// (state T or t), or returns a harness error after timeout. kill(2) with
// SIGSTOP returns before the signal takes effect, and a process's threads
// stop one by one: until the last one has, a request sent to the process may
// still be answered. Without /proc there is nothing to wait on.
func WaitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		running, err := runningThreads(pid)
		if err != nil || running == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return harnessErr("process %d not stopped %s after SIGSTOP (thread %s)", pid, timeout, running)
		}
		time.Sleep(time.Millisecond)
	}
}

// runningThreads returns a thread of pid that is not stopped ("tid state"),
// or "" when all are; an error when /proc cannot tell.
func runningThreads(pid int) (string, error) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return "", fmt.Errorf("no /proc/%d/task", pid)
	}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		// tid (comm) STATE ...; comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		if st := b[i+2]; st != 'T' && st != 't' && st != 'Z' && st != 'X' {
			return fmt.Sprintf("%s %c", filepath.Base(filepath.Dir(f)), st), nil
		}
	}
	return "", nil
}
