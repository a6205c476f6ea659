package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
)

// Labels put on every container the harness creates.
const (
	// LabelHarness marks a container of the harness; [Sweep] removes them.
	LabelHarness = "prism.harness"
	labelKind    = "prism.kind"
	// LabelPID is the pid of the process that created the container, and
	// LabelHost the hostname it ran on: together they name the run that
	// owns it ([SweepRun] removes exactly those of this process).
	LabelPID  = "prism.pid"
	LabelHost = "prism.host"
)

// Budgets of the auto decision.
const (
	autoDockerBudget = 4 * time.Second // daemon health
	autoPullBudget   = 6 * time.Second // pulling a missing image
)

// disableRyuk sets TESTCONTAINERS_RYUK_DISABLED=true when it is unset: the
// reaper needs the testcontainers/ryuk image, which cannot be pulled where
// there is no registry. Without it, the harness removes its own containers
// (Close, and [Sweep] for leftovers). testcontainers-go reads its config once
// per process, so this must happen before its first use.
func disableRyuk() {
	if _, ok := os.LookupEnv("TESTCONTAINERS_RYUK_DISABLED"); !ok {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
}

// tcLogger silences testcontainers-go: the harness logs its own progress.
var tcLogger = tclog.NewNoopLogger()

// dockerProvider returns a testcontainers Docker provider whose daemon
// answered a health check within ctx.
func dockerProvider(ctx context.Context) (*testcontainers.DockerProvider, error) {
	disableRyuk()
	type result struct {
		p   *testcontainers.DockerProvider
		err error
	}
	// NewDockerProvider takes no context; do not let it outlive ctx.
	ch := make(chan result, 1)
	go func() {
		p, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(tcLogger))
		ch <- result{p, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("connect docker: %w", ctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("connect docker: %w", r.err)
	}
	if err := r.p.Health(ctx); err != nil {
		r.p.Close()
		return nil, fmt.Errorf("check docker health: %w", err)
	}
	return r.p, nil
}

// chooseProvider decides what Auto means for kind, in bounded time.
func chooseProvider(ctx context.Context, kind Kind, o Options) (Provider, string) {
	image := o.Image(kind)
	dctx, cancel := context.WithTimeout(ctx, autoDockerBudget)
	defer cancel()
	p, err := dockerProvider(dctx)
	if err != nil {
		return Embedded, fmt.Sprintf("no docker daemon: %v; using embedded", err)
	}
	defer p.Close()
	cli := p.Client()
	if _, err := cli.ImageInspect(dctx, image); err == nil {
		return Container, fmt.Sprintf("docker answers and image %s is present", image)
	} else if !cerrdefs.IsNotFound(err) {
		return Embedded, fmt.Sprintf("docker answers but inspecting image %s failed: %v; using embedded", image, err)
	}
	if o.NoPull {
		return Embedded, fmt.Sprintf("docker answers but image %s is not present and pulling is off (%s); using embedded", image, EnvNoPull)
	}
	pctx, cancel := context.WithTimeout(ctx, autoPullBudget)
	defer cancel()
	o.Logf("backend: image %s is not present; trying to pull it (at most %s)", image, autoPullBudget)
	if err := pullImage(pctx, cli, image); err != nil {
		return Embedded, fmt.Sprintf("docker answers but image %s is not present and cannot be pulled: %v; using embedded", image, err)
	}
	return Container, fmt.Sprintf("docker answers and image %s was pulled", image)
}

// ensureImage makes sure image is present, pulling it within ctx if needed,
// and returns its ID.
func ensureImage(ctx context.Context, cli client.APIClient, image string, noPull bool, logf func(string, ...any)) (string, error) {
	ins, err := cli.ImageInspect(ctx, image)
	if err == nil {
		return ins.ID, nil
	}
	if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect image %s: %w", image, err)
	}
	if noPull {
		return "", fmt.Errorf("image %s is not present and pulling is off (%s); build it (task images) or name a local image", image, EnvNoPull)
	}
	logf("backend: image %s is not present; pulling it", image)
	if err := pullImage(ctx, cli, image); err != nil {
		return "", fmt.Errorf("image %s is not present and cannot be pulled: %w", image, err)
	}
	ins, err = cli.ImageInspect(ctx, image)
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", image, err)
	}
	return ins.ID, nil
}

// pullImage makes one pull attempt, bounded by ctx (testcontainers-go would
// retry for up to 15 minutes).
func pullImage(ctx context.Context, cli client.APIClient, image string) error {
	resp, err := cli.ImagePull(ctx, image, client.ImagePullOptions{})
	if err != nil {
		return fmt.Errorf("pull image: %w", err)
	}
	defer resp.Close()
	for msg, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return fmt.Errorf("pull image: %w", err)
		}
		if msg.Error != nil {
			return fmt.Errorf("pull image: %s", msg.Error.Message)
		}
	}
	return ctx.Err()
}

// harnessLabels returns the labels of a container of kind.
func harnessLabels(kind Kind) map[string]string {
	host, _ := os.Hostname()
	return map[string]string{
		LabelHarness: "true",
		labelKind:    string(kind),
		LabelPID:     strconv.Itoa(os.Getpid()),
		LabelHost:    host,
	}
}

// Sweep removes containers labelled prism.harness=true that this process
// created, or that a process on this host created and that is no longer
// running (left over by a run that was killed, e.g. with SIGKILL, which
// leaves no chance to clean up), and then the Docker networks so labelled
// (a cluster's) by the same rule. Containers of other live processes are left
// alone, so concurrent runs do not remove each other's; a container whose
// owner cannot be told (another host's, as when two machines share a
// daemon) is left alone too. prism-accept calls it at start. Without a
// Docker daemon there is nothing to sweep and it returns 0, nil. It returns
// how many containers it removed.
func Sweep(ctx context.Context) (int, error) {
	host, _ := os.Hostname()
	return sweep(ctx, func(labels map[string]string) bool { return sweepable(labels, host) })
}

// SweepRun removes the containers (and networks) this process created
// (labelled with its pid and host), and nothing else: prism-accept calls it when a run is
// interrupted, after its own cleanup, for a container a setup cut short
// created after the cleanup had looked. It returns how many it removed.
func SweepRun(ctx context.Context) (int, error) {
	host, _ := os.Hostname()
	pid := strconv.Itoa(os.Getpid())
	return sweep(ctx, func(labels map[string]string) bool { return labels[LabelHost] == host && labels[LabelPID] == pid })
}

// sweep removes the harness's containers for which remove is true.
func sweep(ctx context.Context, remove func(labels map[string]string) bool) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, autoDockerBudget)
	p, err := dockerProvider(dctx)
	cancel()
	if err != nil {
		return 0, nil
	}
	defer p.Close()
	cli := p.Client()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelHarness+"=true"),
	})
	if err != nil {
		return 0, harnessErr("list containers: %w", err)
	}
	var (
		n    int
		errs []error
	)
	for _, c := range list.Items {
		if !remove(c.Labels) {
			continue
		}
		_, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %.12s: %w", c.ID, err))
			continue
		}
		n++
	}
	// The networks a cluster run made (harness/cluster), once their
	// containers are gone.
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", LabelHarness+"=true")})
	if err != nil {
		errs = append(errs, fmt.Errorf("list networks: %w", err))
	}
	for _, nw := range nets.Items {
		if !remove(nw.Labels) {
			continue
		}
		if _, err := cli.NetworkRemove(ctx, nw.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove network %s: %w", nw.Name, err))
		}
	}
	if len(errs) > 0 {
		return n, &HarnessError{Err: errors.Join(errs...)}
	}
	return n, nil
}

// sweepable reports whether a container with labels belongs to this process
// or to a process of this host that is gone.
func sweepable(labels map[string]string, host string) bool {
	if labels[LabelHost] != host {
		return false
	}
	pid, err := strconv.Atoi(labels[LabelPID])
	if err != nil || pid <= 0 {
		return true
	}
	if pid == os.Getpid() {
		return true
	}
	err = syscall.Kill(pid, 0)
	return errors.Is(err, syscall.ESRCH)
}
