package acceptance_test

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// The commands are built once per test binary, on first use (a child
// process of TestRunChild never builds), into a directory TestMain removes.
var (
	buildRoot string

	commandsOnce sync.Once
	commandsDir  string
	commandsErr  error

	mutantsOnce sync.Once
	mutantsDir  string
	mutantsErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	raiseParallel()
	code := m.Run()
	if buildRoot != "" {
		_ = os.RemoveAll(buildRoot)
	}
	os.Exit(code)
}

// parallelRuns is how many parallel tests (mutant and control runs of
// prism-accept) run at once unless -test.parallel says otherwise: they wait
// on their plugins, timeouts and deliveries most of the time (at -parallel 2,
// GOMAXPROCS on a 2-core machine, the CPUs stood idle about two thirds of
// this package's run).
const parallelRuns = 6

// raiseParallel sets -test.parallel to parallelRuns when it was not given,
// except in the child of TestRunChild, where Ginkgo refuses a set
// -test.parallel.
func raiseParallel() {
	if os.Getenv(envRunChild) != "" {
		return
	}
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", strconv.Itoa(max(parallelRuns, runtime.GOMAXPROCS(0))))
	}
}

// buildCommands returns a directory holding prism-accept, prism-memstore,
// prism-mutant and the shipped prism-proxy, built once per test binary run.
func buildCommands(t *testing.T) string {
	t.Helper()
	commandsOnce.Do(func() {
		commandsDir, commandsErr = buildDir("commands", nil, "./cmd/prism-accept", "../backends/memstore/cmd/prism-memstore",
			"../backends/mutant/cmd/prism-mutant", "../reference/cmd/prism-proxy")
	})
	if commandsErr != nil {
		t.Fatal(commandsErr)
	}
	return commandsDir
}

// buildMutantCommands is buildCommands with prism-proxy built with -tags
// prism_mutants: the only build that holds the proxy's auth and registry
// defects and reads PRISM_AUTH_MUTANT and PRISM_REGISTRY_MUTANT. It stays
// bin/prism-proxy, in a directory of its own beside copies of the other
// commands, because a registry run finds its slot plugins next to it.
func buildMutantCommands(t *testing.T) string {
	t.Helper()
	shipped := buildCommands(t)
	mutantsOnce.Do(func() {
		mutantsDir, mutantsErr = buildDir("mutants", []string{"-tags", "prism_mutants"}, "../reference/cmd/prism-proxy")
		for _, name := range []string{"prism-accept", "prism-memstore", "prism-mutant"} {
			if mutantsErr == nil {
				mutantsErr = copyFile(filepath.Join(shipped, name), filepath.Join(mutantsDir, name))
			}
		}
	})
	if mutantsErr != nil {
		t.Fatal(mutantsErr)
	}
	return mutantsDir
}

// buildDir builds pkgs with flags into a new directory under buildRoot.
func buildDir(name string, flags []string, pkgs ...string) (string, error) {
	if buildRoot == "" {
		root, err := os.MkdirTemp("", "prism-acceptance-test-")
		if err != nil {
			return "", err
		}
		buildRoot = root
	}
	dir := filepath.Join(buildRoot, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	args := append(append([]string{"build"}, flags...), "-o", dir+"/")
	cmd := exec.Command("go", append(args, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %v: %v\n%s", cmd.Args[1:], err, out)
	}
	return dir, nil
}

// copyFile copies an executable.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
