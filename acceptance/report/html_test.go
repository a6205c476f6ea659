package report_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/harness/backend"
)

func sample(name string, outcomes map[report.Outcome]int) *report.Report {
	r := &report.Report{Schema: report.SchemaVersion, SuiteVersion: "test", Via: "direct",
		Plugin:  report.Plugin{Name: name, Version: "1.0", SHA256: strings.Repeat("ab", 32), StderrTail: `{"level":"INFO","msg":"<serving>"}`},
		Backend: backend.Info{Kind: backend.Redis, Provider: backend.Container, Image: "redis:7-alpine"}}
	i := 0
	for _, o := range []report.Outcome{report.Passed, report.Failed, report.Skipped, report.Disabled, report.Error} {
		for range outcomes[o] {
			i++
			r.Specs = append(r.Specs, report.Spec{Suite: "KeyValue", Capability: "keyvalue.basic", Name: "spec " + strconv.Itoa(i) + " <b>not bold</b>",
				Outcome: o, Reason: "got NotFound, want OK", Reproduce: "prism-accept --ginkgo.focus='x'"})
			r.Totals.Add(o)
		}
	}
	v := report.Certified
	if outcomes[report.Failed] > 0 {
		v = report.VerdictFail
	}
	r.Capabilities = []report.Capability{
		{Name: "lifecycle", Declared: true, Required: true, Verdict: report.Certified, Passed: 8},
		{Name: "keyvalue.basic", Declared: true, Verdict: v, Passed: outcomes[report.Passed], Failed: outcomes[report.Failed],
			Skipped: outcomes[report.Skipped], Errors: outcomes[report.Error]},
		{Name: "keyvalue.ttl", Verdict: report.NotDeclared},
	}
	return r
}

// chromium returns the headless browser, or skips when it is not installed
// (.ci/run installs Debian's chromium, so CI always runs this test).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs it")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// dumpDOM loads url in headless Chromium and returns the DOM after scripts
// ran. Every host name resolves to nothing and the proxy is a closed
// loopback port, so the browser cannot reach any network address.
func dumpDOM(t *testing.T, browser, url string) string {
	t.Helper()
	cmd := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
		"--dns-prefetch-disable", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=2000", "--dump-dom", url)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	return string(out)
}

func TestHTMLInChromium(t *testing.T) {
	browser := chromium(t)
	runs := []*report.Report{
		sample("alpha", map[report.Outcome]int{report.Passed: 5, report.Failed: 2, report.Skipped: 3, report.Error: 1}),
		sample("beta", map[report.Outcome]int{report.Passed: 7, report.Disabled: 2}),
	}
	dir := t.TempDir()
	path, err := report.WriteHTML(dir, runs...)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*"?(https?:)?//`).Find(raw); m != nil {
		t.Errorf("report.html refers to an external asset: %s", m)
	}

	dom := dumpDOM(t, browser, "file://"+filepath.ToSlash(path))
	if !strings.Contains(dom, `id="matrix"`) {
		t.Fatalf("the matrix did not render:\n%.2000s", dom)
	}
	// One cell per capability and run, carrying the report's verdict and counts.
	for i, r := range runs {
		for _, c := range r.Capabilities {
			want := `data-run="` + strconv.Itoa(i) + `" data-verdict="` + string(c.Verdict) + `" data-passed="` + strconv.Itoa(c.Passed) +
				`" data-failed="` + strconv.Itoa(c.Failed) + `" data-skipped="` + strconv.Itoa(c.Skipped) + `" data-errors="` + strconv.Itoa(c.Errors) + `"`
			if !strings.Contains(dom, want) {
				t.Errorf("run %d, %s: matrix cell with %s not found", i, c.Name, want)
			}
		}
	}
	if n := strings.Count(dom, `<tr class="spec `); n != len(runs[0].Specs)+len(runs[1].Specs) {
		t.Errorf("%d spec rows, want %d", n, len(runs[0].Specs)+len(runs[1].Specs))
	}
	if !strings.Contains(dom, "&lt;b&gt;not bold&lt;/b&gt;") {
		t.Error("spec names are not escaped")
	}

	// The failed filter (from the URL) leaves exactly the failures and errors.
	filtered := dumpDOM(t, browser, "file://"+filepath.ToSlash(path)+"#filter=failed")
	wantShown := runs[0].Totals.Failed + runs[0].Totals.Errors + runs[1].Totals.Failed + runs[1].Totals.Errors
	if !strings.Contains(filtered, `data-shown="`+strconv.Itoa(wantShown)+`"`) {
		t.Errorf("with the failed filter, want %d specs shown; body: %s", wantShown, regexp.MustCompile(`<body[^>]*>`).FindString(filtered))
	}
	visible := regexp.MustCompile(`<tr class="spec o-(\w+)" data-outcome="\w+">`).FindAllStringSubmatch(filtered, -1)
	for _, m := range visible {
		if m[1] != "failed" && m[1] != "error" {
			t.Errorf("a %s spec is visible under the failed filter", m[1])
		}
	}
	if len(visible) != wantShown {
		t.Errorf("%d visible rows under the failed filter, want %d", len(visible), wantShown)
	}
	noskip := dumpDOM(t, browser, "file://"+filepath.ToSlash(path)+"#filter=noskip")
	want := len(runs[0].Specs) + len(runs[1].Specs) - runs[0].Totals.Skipped - runs[0].Totals.Disabled - runs[1].Totals.Skipped - runs[1].Totals.Disabled
	if !strings.Contains(noskip, `data-shown="`+strconv.Itoa(want)+`"`) {
		t.Errorf("with skipped hidden, want %d specs shown", want)
	}
}
