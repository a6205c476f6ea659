package acceptance_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/harness/backend"
)

// TestAutoRunsContainersWhenDockerAnswers makes `task test` prove that the
// container provider really runs where it can: when the Docker daemon
// answers and the images are named (PRISM_REDIS_IMAGE and PRISM_NATS_IMAGE,
// as on CI, where there is no registry), a short redis and nats run with
// --instance auto must record provider "container" in report.json. A
// fallback to embedded (auto falls back silently, saying why only in the
// report) fails the test with auto's reason. Without a daemon or without
// the variables it skips, unless PRISM_REQUIRE_CONTAINERS=1 (set by .ci/run
// when Docker answers), which turns every such skip into a failure.
func TestAutoRunsContainersWhenDockerAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs prism-accept against containers")
	}
	for _, env := range []string{backend.EnvRedisImage, backend.EnvNATSImage} {
		if os.Getenv(env) == "" {
			skipUnlessRequired(t, "%s is not set: this test checks auto with the images a machine without a registry names", env)
		}
	}
	dockerOrSkip(t) // the images are not checked: a missing one must fail below, with auto's reason
	bin := buildRedisCommands(t)
	for _, kind := range []backend.Kind{backend.Redis, backend.NATS} {
		t.Run(string(kind), func(t *testing.T) {
			start := time.Now()
			rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-"+string(kind)), "--backend", string(kind),
				"--instance", "auto", "--label-filter", "lifecycle")
			t.Logf("%s: provider %s (%s), exit %d, in %v", kind, rep.Backend.Provider, rep.Backend.Reason, code, time.Since(start).Round(time.Millisecond))
			if rep.Backend.Provider != backend.Container {
				t.Fatalf("Docker answers and %s names the image, but auto chose provider %q: %s\n%s", imageEnv(kind), rep.Backend.Provider, rep.Backend.Reason, out)
			}
			if rep.Backend.Image != imageOf(kind) || rep.Backend.ImageID == "" || rep.Backend.ServerVersion == "" {
				t.Errorf("report.json backend = %+v; want image %s with its id and server version", rep.Backend, imageOf(kind))
			}
			if code != report.ExitOK {
				t.Errorf("exit %d (%s), want 0\n%s", code, rep.ExitReason, out)
			}
		})
	}
}

func imageEnv(kind backend.Kind) string {
	if kind == backend.NATS {
		return backend.EnvNATSImage
	}
	return backend.EnvRedisImage
}
