package proto_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/prism-suite/prism/"

// importRule forbids packages under from importing packages under any of
// banned. deps says whether every dependency counts (transitive) or only
// direct imports; tests says whether test files' imports count too.
type importRule struct {
	from   string
	banned []string
	deps   bool
	tests  bool
	why    string
}

// importRules are the import rules of ARCHITECTURE.md: the suites observe
// plugins and the proxy only through the protocol, the shipped proxy carries
// no harness code, and the protocol's packages stand alone.
var importRules = []importRule{
	{from: "suites/", banned: []string{"backends/", "reference/"}, tests: true,
		why: "suites observe plugins and the proxy only through the protocol (constants they share live in proto/)"},
	{from: "reference/", banned: []string{"harness/", "suites/", "acceptance/"}, deps: true,
		why: "the shipped proxy, client and prismctl carry no test harness (the plugin launcher is proto/launch)"},
	{from: "proto/", banned: []string{"backends/", "reference/", "harness/", "suites/", "acceptance/"},
		why: "the protocol's packages import nothing of ours but proto/"},
	{from: "backends/sdk", banned: []string{"reference/", "harness/", "suites/", "acceptance/"}, deps: true,
		why: "the plugin SDK depends on the protocol only"},
}

// TestImportRules lists every package of the module with go list and checks
// importRules.
func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages; want the whole module", len(pkgs))
	}
	for _, v := range violations(pkgs, importRules) {
		t.Error(v)
	}
}

// listedPackage is what go list tells of one package.
type listedPackage struct {
	path                      string
	imports, deps, testImport []string
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-f",
		"{{.ImportPath}}\t{{join .Imports \" \"}}\t{{join .Deps \" \"}}\t{{join .TestImports \" \"}} {{join .XTestImports \" \"}}", "./...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 4 {
			t.Fatalf("go list line %q", sc.Text())
		}
		pkgs = append(pkgs, listedPackage{path: f[0], imports: strings.Fields(f[1]), deps: strings.Fields(f[2]), testImport: strings.Fields(f[3])})
	}
	return pkgs
}

// violations returns one sentence per import that breaks a rule.
func violations(pkgs []listedPackage, rules []importRule) []string {
	var out []string
	for _, p := range pkgs {
		rel, ok := strings.CutPrefix(p.path, module)
		if !ok {
			continue
		}
		for _, r := range rules {
			if !strings.HasPrefix(rel, r.from) {
				continue
			}
			seen := p.imports
			how := "imports"
			if r.deps {
				seen, how = p.deps, "depends on"
			}
			if r.tests {
				seen = append(append([]string(nil), seen...), p.testImport...)
			}
			for _, imp := range seen {
				irel, ok := strings.CutPrefix(imp, module)
				if !ok {
					continue
				}
				for _, b := range r.banned {
					if strings.HasPrefix(irel, b) {
						out = append(out, rel+" "+how+" "+irel+": "+r.why)
					}
				}
			}
		}
	}
	return out
}

func TestViolationsNamesTheImport(t *testing.T) {
	pkgs := []listedPackage{
		{path: module + "suites/x", imports: []string{module + "proto/detail"}, testImport: []string{module + "backends/sdk"}},
		{path: module + "reference/proxy", imports: []string{module + "proto/launch"}, deps: []string{module + "harness/plugin"}},
		{path: module + "acceptance", imports: []string{module + "backends/sdk", module + "reference/proxy"}},
	}
	got := violations(pkgs, importRules)
	if len(got) != 2 || !strings.HasPrefix(got[0], "suites/x imports backends/sdk") || !strings.HasPrefix(got[1], "reference/proxy depends on harness/plugin") {
		t.Errorf("violations = %q", got)
	}
}
