package launch_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	plugin "github.com/prism-suite/prism/proto/launch"
)

// badPlugins are plugin shapes that never become a plugin. Each leaves a
// child behind that would outlive the test (sleep 45) unless the launcher
// stops the plugin's whole process group.
var badPlugins = []struct {
	name, script, wantErr string
}{
	{"wrapper whose background child keeps the pipes and which exits 1",
		"sleep 45 &\nexit 1\n", "exited without a handshake line"},
	{"script that never prints a handshake",
		"sleep 45 &\nwait\n", "no handshake line within"},
	{"script that prints garbage and stays",
		"echo 'hello, I am a plugin'\nsleep 45 &\nwait\n", "parse handshake"},
	{"script that prints garbage and exits 1",
		"echo 'hello, I am a plugin'\nsleep 45 &\nexit 1\n", "parse handshake"},
	{"script whose child holds stdout after it closed its own",
		"sleep 45 &\nexec >&- 2>&-\nwait\n", "no handshake line within"},
	{"script whose child holds stdout after it exits 0",
		"(exec 2>&-; sleep 45) &\nexit 0\n", "exited without a handshake line"},
	{"script that prints an endless first line",
		"sleep 45 &\nhead -c 100000 /dev/zero | tr '\\0' x\nwait\n", "longer than"},
}

func TestBadPluginsLeaveNoProcessBehind(t *testing.T) {
	for _, bp := range badPlugins {
		t.Run(bp.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "plugin.sh")
			if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+bp.script), 0o755); err != nil {
				t.Fatal(err)
			}
			opts := plugin.DefaultOptions()
			mark := marker(t)
			opts.Env = []string{mark}
			opts.HandshakeTimeout = 500 * time.Millisecond
			opts.StopGrace = 300 * time.Millisecond
			start := time.Now()
			p, err := plugin.Launch(context.Background(), bin, opts)
			launched := time.Since(start)
			if err == nil {
				t.Fatal("Launch succeeded, want a handshake error")
			}
			if !strings.Contains(err.Error(), bp.wantErr) {
				t.Errorf("Launch error = %q, want it to contain %q", err, bp.wantErr)
			}
			// The handshake deadline holds whatever the child does (plus the
			// launcher's one-second wait for pipes a process outside the group may hold).
			if max := opts.HandshakeTimeout + 2*time.Second; launched > max {
				t.Errorf("Launch took %v, want at most %v", launched, max)
			}
			if p == nil {
				t.Fatal("Launch returned no process to stop")
			}
			start = time.Now()
			_ = p.Stop(context.Background())
			if max := opts.StopGrace + 2*time.Second; time.Since(start) > max {
				t.Errorf("Stop took %v, want at most %v", time.Since(start), max)
			}
			waitGone(t, mark, 5*time.Second)
		})
	}
}

// TestKillStopsTheWholeGroup: Kill (fault injection) leaves no child of the
// plugin running either.
func TestKillStopsTheWholeGroup(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "plugin.sh")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nsleep 45 &\nwait\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := plugin.DefaultOptions()
	mark := marker(t)
	opts.Env = []string{mark}
	opts.HandshakeTimeout = 200 * time.Millisecond
	p, err := plugin.Launch(context.Background(), bin, opts)
	if err == nil || p == nil {
		t.Fatalf("Launch = %v, %v; want a process and a handshake error", p, err)
	}
	if n := marked(t, mark); len(n) < 2 {
		t.Fatalf("%d live plugin processes before Kill, want the script and its sleep", len(n))
	}
	p.Kill()
	waitGone(t, mark, 5*time.Second)
}

// marker returns an environment entry unique to the test; every process the
// plugin starts inherits it, in its process group or not.
func marker(t *testing.T) string {
	return "PRISM_TEST_MARK=" + strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.Itoa(os.Getpid())
}

// waitGone polls the process table until no live process carries mark in
// its environment, or fails after timeout listing what is left.
func waitGone(t *testing.T, mark string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := marked(t, mark)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin processes still running %v after stop: %v", timeout, left)
		}
		time.Sleep(20 * time.Millisecond) // polling the process table, not waiting for readiness
	}
}

// marked lists "comm[pid]" of every live (not zombie) process whose
// environment holds mark.
func marked(t *testing.T, mark string) []string {
	t.Helper()
	procs, err := procfs.AllProcs()
	if err != nil {
		t.Fatalf("read process table: %v", err)
	}
	var out []string
	for _, p := range procs {
		env, err := p.Environ()
		if err != nil || !slices.Contains(env, mark) {
			continue // exited while we looked, or not ours
		}
		if st, err := p.Stat(); err == nil && st.State != "Z" {
			out = append(out, st.Comm+"["+strconv.Itoa(st.PID)+"]")
		}
	}
	return out
}

// TestLaunchErrorsAreShort: whatever a plugin prints, the launch error
// quotes at most a few hundred bytes of it (it reaches clients, /status and
// logs); Stderr keeps more for reports.
func TestLaunchErrorsAreShort(t *testing.T) {
	for name, script := range map[string]string{
		"3 KB version field":         "printf 'PRISM-PLUGIN|%s|unix|/tmp/x\\n' \"$(head -c 3000 /dev/zero | tr '\\0' 9)\"\nsleep 1\n",
		"10 MB version field":        "printf 'PRISM-PLUGIN|'\nhead -c 10000000 /dev/zero | tr '\\0' 9\nprintf '|unix|/tmp/x\\n'\n",
		"1 MB of stderr then exit 1": "head -c 1000000 /dev/zero | tr '\\0' e >&2\nexit 1\n",
		"1 MB stderr line then hang": "head -c 1000000 /dev/zero | tr '\\0' e >&2\nsleep 45\n",
	} {
		t.Run(name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "plugin.sh")
			if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
				t.Fatal(err)
			}
			opts := plugin.DefaultOptions()
			opts.HandshakeTimeout = time.Second
			opts.StopGrace = 100 * time.Millisecond
			p, err := plugin.Launch(context.Background(), bin, opts)
			if p != nil {
				defer p.Stop(context.Background())
			}
			if err == nil {
				t.Fatal("Launch succeeded")
			}
			if n := len(err.Error()); n > 1024 {
				t.Errorf("launch error is %d bytes, want at most 1 KiB: %.300s…", n, err)
			}
		})
	}
}
