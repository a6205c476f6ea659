package acceptance_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/prism-suite/prism/acceptance"
	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/harness/backend"
)

// EnvRequireContainers, set to 1 (CI sets it when Docker answers), turns the
// skips of the container tests into failures: there, a container test that
// cannot run is a broken setup, not a machine without Docker.
const EnvRequireContainers = "PRISM_REQUIRE_CONTAINERS"

// skipUnlessRequired skips t with the reason, or fails it when containers
// are required (PRISM_REQUIRE_CONTAINERS=1).
func skipUnlessRequired(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(EnvRequireContainers) == "1" {
		t.Fatalf(format+" (and "+EnvRequireContainers+"=1 requires containers)", args...)
	}
	t.Skipf(format, args...)
}

// dockerOrSkip returns a Docker client when the daemon answers and the images
// are present, and skips t (fails it under PRISM_REQUIRE_CONTAINERS=1) when
// not.
func dockerOrSkip(t *testing.T, images ...string) client.APIClient {
	t.Helper()
	miss := func(format string, args ...any) { t.Helper(); skipUnlessRequired(t, format, args...) }
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		miss("no Docker daemon: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Health(ctx); err != nil {
		miss("the Docker daemon does not answer: %v", err)
	}
	for _, img := range images {
		if _, err := p.Client().ImageInspect(ctx, img); err != nil {
			miss("image %s is not present (task images builds the offline ones; set PRISM_REDIS_IMAGE/PRISM_NATS_IMAGE): %v", img, err)
		}
	}
	return p.Client()
}

// imageOf returns the image the harness uses for kind (its env override or
// its default).
func imageOf(kind backend.Kind) string {
	o := backend.DefaultOptions()
	if kind == backend.NATS {
		return o.NATSImage
	}
	return o.RedisImage
}

// containersOf returns the IDs of the harness's containers labelled with
// pid on this host, running or not.
func containersOf(t *testing.T, cli client.APIClient, pid int) []string {
	t.Helper()
	host, _ := os.Hostname()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).
		Add("label", backend.LabelHarness+"=true").Add("label", backend.LabelPID+"="+strconv.Itoa(pid)).Add("label", backend.LabelHost+"="+host)})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	var ids []string
	for _, c := range list.Items {
		ids = append(ids, c.ID)
	}
	return ids
}

// labelledContainer starts a container of image labelled as if the harness
// of process pid had started it.
func labelledContainer(t *testing.T, cli client.APIClient, image string, pid int) string {
	t.Helper()
	host, _ := os.Hostname()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := testcontainers.Run(ctx, image, testcontainers.WithLogger(tclog.NewNoopLogger()), testcontainers.WithLabels(map[string]string{
		backend.LabelHarness: "true", backend.LabelPID: strconv.Itoa(pid), backend.LabelHost: host}))
	if err != nil {
		t.Fatalf("start a container labelled with pid %d: %v", pid, err)
	}
	id := c.GetContainerID()
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true})
	})
	return id
}

// exists reports whether container id is there.
func exists(t *testing.T, cli client.APIClient, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	return err == nil
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Skipf("pid %d was reused at once (%v)", pid, err)
	}
	return pid
}

// buildRedisCommands builds prism-accept and prism-redis into a temp dir.
func buildRedisCommands(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/prism-accept", "../backends/redis/cmd/prism-redis", "../backends/nats/cmd/prism-nats")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build commands: %v\n%s", err, out)
	}
	return dir
}

// TestInterruptRemovesContainers starts prism-accept against a redis
// container, sends SIGINT as soon as the container exists (while the run
// sets up or runs its first specs), and requires exit code 130, no container
// of the run left, and a report that says the run was interrupted. The run
// also sweeps at start: a container labelled with a pid that is gone is
// removed, one labelled with a live process's pid (this test's) is kept.
func TestInterruptRemovesContainers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs prism-accept against a container")
	}
	image := imageOf(backend.Redis)
	cli := dockerOrSkip(t, image)
	bin := buildRedisCommands(t)
	orphan := labelledContainer(t, cli, image, deadPID(t))
	live := labelledContainer(t, cli, image, os.Getpid())

	reportDir := t.TempDir()
	var out strings.Builder
	cmd := exec.Command(filepath.Join(bin, "prism-accept"), "--plugin", filepath.Join(bin, "prism-redis"),
		"--backend", "redis", "--instance", "container", "--report-dir", reportDir)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		for _, id := range containersOf(t, cli, cmd.Process.Pid) {
			_, _ = cli.ContainerRemove(context.Background(), id, client.ContainerRemoveOptions{Force: true})
		}
	}()

	start := time.Now()
	deadline := start.Add(90 * time.Second)
	for len(containersOf(t, cli, cmd.Process.Pid)) == 0 {
		select {
		case err := <-exited:
			t.Fatalf("prism-accept exited (%v) before its container was seen:\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container labelled with prism-accept's pid %d after 90s:\n%s", cmd.Process.Pid, out.String())
		}
	}
	t.Logf("container seen %v after start; sending SIGINT", time.Since(start).Round(time.Millisecond))
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	var err error
	select {
	case err = <-exited:
	case <-time.After(90 * time.Second):
		t.Fatalf("prism-accept still runs 90s after SIGINT:\n%s", out.String())
	}
	t.Logf("prism-accept exited %v after SIGINT", time.Since(sent).Round(time.Millisecond))
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != 130 {
		t.Errorf("exit code %d after SIGINT, want 130:\n%s", code, out.String())
	}
	if left := containersOf(t, cli, cmd.Process.Pid); len(left) > 0 {
		t.Errorf("containers of the interrupted run are left: %.12q", left)
	}
	rep, rerr := report.Read(filepath.Join(reportDir, "report.json"))
	if rerr != nil {
		t.Fatalf("no report after SIGINT: %v\n%s", rerr, out.String())
	}
	if rep.ExitCode != 130 || !strings.HasPrefix(rep.ExitReason, "interrupted by SIGINT") {
		t.Errorf("report: exit %d, reason %q; want 130, \"interrupted by SIGINT…\"", rep.ExitCode, rep.ExitReason)
	}
	if exists(t, cli, orphan) {
		t.Errorf("the container of a process that is gone (%.12s) was not swept at start", orphan)
	}
	if !exists(t, cli, live) {
		t.Errorf("the container of a live process (%.12s, this test's) was removed", live)
	}
}

// syncBuffer is a strings.Builder safe for a child's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestSIGTERMStopsTheRun sends SIGTERM to a memstore run (no Docker needed)
// once its first spec has passed, and requires exit code 143 and a report
// that says the run was interrupted, with the specs after it not run.
func TestSIGTERMStopsTheRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs prism-accept")
	}
	bin := buildCommands(t)
	run := startAccept(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"))
	run.waitFor("\npassed ")
	rep := run.sigterm()
	if rep.Totals.Passed == 0 || rep.Totals.Passed >= len(rep.Specs) {
		t.Errorf("report: %d of %d specs passed; want some, not all (the run was stopped)", rep.Totals.Passed, len(rep.Specs))
	}
}

// acceptRun is a prism-accept started in the background, writing its
// reports into dir.
type acceptRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	out    *syncBuffer
	exited chan error
}

// startAccept starts prism-accept with args and a report folder of its own.
func startAccept(t *testing.T, bin string, args ...string) *acceptRun {
	t.Helper()
	r := &acceptRun{t: t, dir: t.TempDir(), out: &syncBuffer{}, exited: make(chan error, 1)}
	r.cmd = exec.Command(filepath.Join(bin, "prism-accept"), append(args, "--report-dir", r.dir)...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() { _ = r.cmd.Process.Kill() })
	return r
}

// waitFor waits up to a minute for text in the output; the run exiting
// first fails the test.
func (r *acceptRun) waitFor(text string) {
	r.t.Helper()
	deadline := time.After(time.Minute)
	for !strings.Contains(r.out.String(), text) {
		select {
		case err := <-r.exited:
			r.t.Fatalf("prism-accept exited (%v) before %q:\n%s", err, text, r.out.String())
		case <-deadline:
			r.t.Fatalf("no %q within a minute:\n%s", text, r.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// exit waits up to a minute for the run to exit and returns its exit code
// and report.
func (r *acceptRun) exit() (int, *report.Report) {
	r.t.Helper()
	code := 0
	select {
	case err := <-r.exited:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			r.t.Fatal(err)
		}
	case <-time.After(time.Minute):
		r.t.Fatalf("prism-accept still runs a minute on:\n%s", r.out.String())
	}
	rep, err := report.Read(filepath.Join(r.dir, "report.json"))
	if err != nil {
		r.t.Fatalf("no report (exit %d): %v\n%s", code, err, r.out.String())
	}
	return code, rep
}

// sigterm sends SIGTERM and checks the run stops: exit code 143, and a
// report that says it was interrupted, which it returns.
func (r *acceptRun) sigterm() *report.Report {
	r.t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatal(err)
	}
	code, rep := r.exit()
	if code != 143 {
		r.t.Errorf("after SIGTERM: exit %d, want 143:\n%s", code, r.out.String())
	}
	if rep.ExitCode != 143 || !strings.HasPrefix(rep.ExitReason, "interrupted by SIGTERM") {
		r.t.Errorf("report: exit %d, reason %q; want 143, \"interrupted by SIGTERM…\"", rep.ExitCode, rep.ExitReason)
	}
	return rep
}

// TestExitInterrupted pins the documented exit codes.
func TestExitInterrupted(t *testing.T) {
	if got := acceptance.ExitInterrupted(syscall.SIGINT); got != 130 {
		t.Errorf("ExitInterrupted(SIGINT) = %d, want 130", got)
	}
	if got := acceptance.ExitInterrupted(syscall.SIGTERM); got != 143 {
		t.Errorf("ExitInterrupted(SIGTERM) = %d, want 143", got)
	}
}
