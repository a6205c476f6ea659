package acceptance_test

import (
	"path/filepath"
	"testing"

	"github.com/prism-suite/prism/acceptance/report"
	"github.com/prism-suite/prism/proto/capability"
)

// TestAdminIsCertifiedForTheProxy: prism-accept --admin runs the admin
// suite against two reference proxies sharing an admin store and certifies
// admin.namespaces for the proxy (no plugin declares it).
func TestAdminIsCertifiedForTheProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the admin suite")
	}
	bin := buildCommands(t)
	rep, code, out := accept(t, bin, "--plugin", filepath.Join(bin, "prism-memstore"), "--backend", "memstore",
		"--proxy", filepath.Join(bin, "prism-proxy"), "--admin", "--label-filter", "admin")
	if v := rep.Verdict(string(capability.AdminNamespaces)); v != report.Certified {
		t.Errorf("%s: %q, want certified\n%s", capability.AdminNamespaces, v, out)
	}
	if code != report.ExitOK {
		t.Errorf("exit %d, want 0\n%s", code, out)
	}
}
