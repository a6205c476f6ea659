package scaffold_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prism-suite/prism/acceptance/scaffold"
)

// repoRoot is this checkout, which a scaffolded Go plugin's go.mod replaces
// github.com/prism-suite/prism with.
var repoRoot, _ = filepath.Abs("../..")

var (
	acceptOnce sync.Once
	acceptBin  string
	acceptErr  error
	binDir     string
)

// prismAccept builds prism-accept once per test binary.
func prismAccept(t *testing.T) string {
	t.Helper()
	acceptOnce.Do(func() {
		acceptBin = filepath.Join(binDir, "prism-accept")
		out, err := exec.Command("go", "build", "-o", acceptBin, "../cmd/prism-accept").CombinedOutput()
		if err != nil {
			acceptErr = errors.New("build prism-accept: " + err.Error() + "\n" + string(out))
		}
	})
	if acceptErr != nil {
		t.Fatal(acceptErr)
	}
	return acceptBin
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scaffold-test-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needPython(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf").CombinedOutput(); err != nil {
		t.Skipf("Debian's python3-grpcio and python3-protobuf are not installed (apt-get install python3-grpcio python3-protobuf; .ci/run does): %v %s", err, out)
	}
}

// write scaffolds a plugin of lang into a temp dir and returns the path of
// what prism-accept launches.
func write(t *testing.T, lang string) (dir, plugin string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "my-plugin")
	files, err := scaffold.Write(scaffold.Options{Lang: lang, Name: "my-plugin", Dir: dir, PrismDir: repoRoot})
	if err != nil {
		t.Fatalf("Write(%s): %v", lang, err)
	}
	for _, f := range files {
		if strings.Contains(f, "__pycache__") {
			t.Errorf("the scaffold wrote %s", f)
		}
	}
	if lang == "python" {
		return dir, filepath.Join(dir, "plugin.py")
	}
	return dir, filepath.Join(dir, "bin", "my-plugin")
}

// build builds a scaffolded Go plugin as its README says, offline: the
// modules come from the module cache and the checkout's go.sum.
func build(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-mod=mod", "-o", filepath.Join("bin", "my-plugin"), ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOPROXY=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build of the scaffolded plugin: %v\n%s", err, out)
	}
}

// certifyLifecycle runs prism-accept --label-filter lifecycle on plugin and
// returns its exit code and output.
func certifyLifecycle(t *testing.T, dir, plugin string) (int, string) {
	t.Helper()
	cmd := exec.Command(prismAccept(t), "--plugin", plugin, "--backend", "memstore", "--label-filter", "lifecycle",
		"--bad-config", filepath.Join(dir, "bad-config.yaml"), "--report-dir", filepath.Join(t.TempDir(), "report"))
	cmd.Env = append(os.Environ(), "TESTCONTAINERS_RYUK_DISABLED=true")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("run prism-accept: %v", err)
	return 0, ""
}

// TestScaffoldCertifiesLifecycle scaffolds a Go and a Python plugin, builds
// the Go one, and certifies lifecycle on each as written: prism-accept must
// exit 0 with lifecycle certified.
func TestScaffoldCertifiesLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and certifies two plugins")
	}
	t.Parallel()
	for _, lang := range scaffold.Langs {
		t.Run(lang, func(t *testing.T) {
			t.Parallel() // each waits mostly on its plugin processes
			if lang == "python" {
				needPython(t)
			}
			dir, plugin := write(t, lang)
			if lang == "go" {
				build(t, dir)
			}
			code, out := certifyLifecycle(t, dir, plugin)
			if code != 0 || !strings.Contains(out, "lifecycle                certified") {
				t.Fatalf("prism-accept --label-filter lifecycle on the scaffolded %s plugin: exit %d, want 0 with lifecycle certified\n%s", lang, code, out)
			}
		})
	}
}

// TestBrokenScaffoldFailsLifecycle is the check that the test above can
// fail: a scaffolded Python plugin whose Initialize accepts every config
// (the unknown-field refusal removed) must fail lifecycle with exit 1.
func TestBrokenScaffoldFailsLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("certifies a plugin")
	}
	t.Parallel()
	needPython(t)
	dir, plugin := write(t, "python")
	b, err := os.ReadFile(plugin)
	if err != nil {
		t.Fatal(err)
	}
	const refusal = `raise ConfigError(field, "unknown field")`
	if !bytes.Contains(b, []byte(refusal)) {
		t.Fatalf("plugin.py no longer holds %q; update this test", refusal)
	}
	if err := os.WriteFile(plugin, bytes.Replace(b, []byte(refusal), []byte("continue"), 1), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out := certifyLifecycle(t, dir, plugin)
	if code != 1 || !strings.Contains(out, "rejects an invalid config in Initialize") {
		t.Fatalf("a scaffold accepting every config: exit %d, want 1 failing the invalid-config spec\n%s", code, out)
	}
}

// TestPythonKitIsWritten checks that a scaffolded Python plugin gets
// backends/python-memstore's prismkit and gen byte for byte.
func TestPythonKitIsWritten(t *testing.T) {
	dir, _ := write(t, "python")
	n := 0
	for _, sub := range []string{"prismkit", "gen"} {
		src := filepath.Join(repoRoot, "backends", "python-memstore", sub)
		_ = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Ext(path) != ".py" {
				return err
			}
			rel, _ := filepath.Rel(filepath.Dir(src), path)
			want, _ := os.ReadFile(path)
			got, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("the scaffold's %s differs from backends/python-memstore/%s (%v)", rel, rel, err)
			}
			n++
			return nil
		})
	}
	if n == 0 {
		t.Fatal("found no Python file in backends/python-memstore/{prismkit,gen}")
	}
}

// TestNewPluginUsage checks the command's refusals: exit 64 and a reason.
func TestNewPluginUsage(t *testing.T) {
	used := t.TempDir()
	if err := os.WriteFile(filepath.Join(used, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--lang", "rust", "p"},
		{"--lang", "go", "Bad_Name"},
		{"--lang", "go"},
		{"p"},
		{"--lang", "python", "--dir", used, "p"},
		{"--lang", "go", "--prism-dir", t.TempDir(), "p"},
	} {
		var stdout, stderr bytes.Buffer
		if code := scaffold.Main(args, &stdout, &stderr); code != 64 || stderr.Len() == 0 {
			t.Errorf("new-plugin %q: exit %d, stderr %q; want 64 with a reason", args, code, stderr.String())
		}
	}
}
