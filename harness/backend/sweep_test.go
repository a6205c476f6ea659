package backend_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/prism-suite/prism/harness/backend"
)

// TestSweepRunRemovesOnlyThisProcesssContainers checks that SweepRun
// removes the containers of this process and leaves those labelled with
// another live process's pid (a parallel run's). It does not run in
// parallel: it would remove the containers of other tests.
func TestSweepRunRemovesOnlyThisProcesssContainers(t *testing.T) {
	requireProvider(t, backend.Redis, backend.Container)
	cli := dockerClient(t)
	inst := start(t, backend.Redis, options(t, backend.Container))
	own := containerByPort(t, cli, inst.Info().Address)

	// A container of another live process on this host: our parent's.
	host, _ := os.Hostname()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other, err := testcontainers.Run(ctx, backend.DefaultOptions().RedisImage, testcontainers.WithLogger(tclog.NewNoopLogger()),
		testcontainers.WithLabels(map[string]string{backend.LabelHarness: "true", backend.LabelHost: host,
			backend.LabelPID: strconv.Itoa(os.Getppid())}))
	if other != nil {
		t.Cleanup(func() { _ = other.Terminate(context.Background()) })
	}
	if err != nil {
		t.Fatal(err)
	}

	n, err := backend.SweepRun(context.Background())
	if err != nil || n != 1 {
		t.Errorf("SweepRun: got %d, %v; want 1, nil", n, err)
	}
	if _, err := cli.ContainerInspect(ctxTimeout(t, 5*time.Second), own, client.ContainerInspectOptions{}); err == nil {
		t.Errorf("this process's container %.12s is still there after SweepRun", own)
	}
	if _, err := cli.ContainerInspect(ctxTimeout(t, 5*time.Second), other.GetContainerID(), client.ContainerInspectOptions{}); err != nil {
		t.Errorf("another live process's container %.12s was removed: %v", other.GetContainerID(), err)
	}
	if err := inst.Close(context.Background()); err != nil {
		t.Errorf("Close after SweepRun: %v", err)
	}
}

// TestSweepRemovesNetworksOfGoneRuns: a network a killed cluster run left
// (labelled with the pid of a process that is gone) is removed by Sweep; one
// of a live process (a concurrent run's) stays.
func TestSweepRemovesNetworksOfGoneRuns(t *testing.T) {
	requireProvider(t, backend.Redis, backend.Container)
	cli := dockerClient(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	ids := map[string]string{}
	for name, pid := range map[string]int{"gone": gone.Process.Pid, "live": os.Getppid()} {
		res, err := cli.NetworkCreate(ctxTimeout(t, 10*time.Second), fmt.Sprintf("prism-sweep-test-%s-%d", name, os.Getpid()), client.NetworkCreateOptions{
			Driver: "bridge", Labels: map[string]string{backend.LabelHarness: "true", backend.LabelHost: host, backend.LabelPID: strconv.Itoa(pid)},
		})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = res.ID
		t.Cleanup(func() { _, _ = cli.NetworkRemove(context.Background(), res.ID, client.NetworkRemoveOptions{}) })
	}
	if _, err := backend.Sweep(context.Background()); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if _, err := cli.NetworkInspect(ctxTimeout(t, 5*time.Second), ids["gone"], client.NetworkInspectOptions{}); err == nil {
		t.Error("the network of a gone process is still there after Sweep")
	}
	if _, err := cli.NetworkInspect(ctxTimeout(t, 5*time.Second), ids["live"], client.NetworkInspectOptions{}); err != nil {
		t.Errorf("the network of a live process was removed: %v", err)
	}
}
