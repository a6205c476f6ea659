package ctl_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	memstorepkg "github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/reference/auth"
	"github.com/prism-suite/prism/reference/ctl"
	"github.com/prism-suite/prism/reference/login"
	"github.com/prism-suite/prism/reference/proxy"
)

// TestAdminCommands runs prismctl admin against an in-process proxy with
// the admin API on.
func TestAdminCommands(t *testing.T) {
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	dir := t.TempDir()
	cfg := proxy.DefaultConfig()
	cfg.Listen, cfg.MetricsListen = "127.0.0.1:0", "off"
	ac := auth.DefaultConfig()
	ac.Issuer, ac.Audience = iss.URL(), iss.Audience()
	cfg.Auth = &ac
	cfg.Admin = &proxy.AdminConfig{Listen: "127.0.0.1:0", Role: proxy.AdminRole{Claim: "groups", Value: "prism-admin"},
		Store: proxy.AdminStore{File: filepath.Join(dir, "store.json")}, AuditLog: filepath.Join(dir, "audit.jsonl")}
	p, err := proxy.New(cfg, proxy.WithPluginStderr(io.Discard),
		proxy.WithBuiltin("memstore", func() sdk.Driver { return memstorepkg.New() }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())

	c := iss.Claims("alice")
	c["groups"] = []string{"prism-admin"}
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(iss.MustMint(c)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nsFile := filepath.Join(dir, "ns.yaml")
	write := func(instance string) {
		spec := "name: orders\npattern: keyvalue\nplugin: {builtin: memstore, instance: " + instance + "}\n"
		if err := os.WriteFile(nsFile, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(wantCode int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		args = append([]string{"admin"}, append(args, "--admin-addr", p.AdminAddr())...)
		if code := ctl.Main(args, &out, &errb); code != wantCode {
			t.Fatalf("prismctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
		}
		return out.String() + errb.String()
	}
	write("one")
	if out := run(ctl.ExitFailed, "namespace", "list", "--token", "not-a-token"); !strings.Contains(out, "Unauthenticated") {
		t.Errorf("list with a bad token: %q, want Unauthenticated", out)
	}
	if out := run(ctl.ExitOK, "namespace", "create", "-f", nsFile, "--token-file", tokFile); !strings.Contains(out, "created orders revision 1") {
		t.Errorf("create: %q", out)
	}
	t.Setenv("PRISM_TOKEN", iss.MustMint(c))
	write("two")
	if out := run(ctl.ExitOK, "namespace", "update", "-f", nsFile); !strings.Contains(out, "updated orders revision 2") {
		t.Errorf("update: %q", out)
	}
	if out := run(ctl.ExitFailed, "namespace", "update", "-f", nsFile, "--revision", "1"); !strings.Contains(out, "Aborted") {
		t.Errorf("update of a stale revision: %q, want Aborted", out)
	}
	if out := run(ctl.ExitOK, "namespace", "list"); !strings.Contains(out, "orders") || !strings.Contains(out, "admin") {
		t.Errorf("list: %q", out)
	}
	if out := run(ctl.ExitOK, "namespace", "status"); !strings.Contains(out, "orders") || !strings.Contains(out, "builtin") {
		t.Errorf("status: %q", out)
	}
	if out := run(ctl.ExitOK, "namespace", "get", "orders"); !strings.Contains(out, "instance: two") {
		t.Errorf("get: %q", out)
	}
	if out := run(ctl.ExitOK, "namespace", "delete", "orders"); !strings.Contains(out, "deleted orders") {
		t.Errorf("delete: %q", out)
	}
	if out := run(ctl.ExitFailed, "namespace", "get", "orders"); !strings.Contains(out, "NotFound") {
		t.Errorf("get after delete: %q, want NotFound", out)
	}
	run(ctl.ExitUsage, "namespace", "create")

	// Without --token, --token-file and $PRISM_TOKEN: prismctl login's token
	// file, and no call at all without one.
	t.Setenv("PRISM_TOKEN", "")
	loginFile := filepath.Join(dir, "login", "token")
	t.Setenv(login.EnvTokenFile, loginFile)
	if out := run(ctl.ExitUsage, "namespace", "list"); !strings.Contains(out, "no token") {
		t.Errorf("list without any token: %q, want no token", out)
	}
	if err := login.Save(loginFile, &login.File{Issuer: iss.URL(), ClientID: "prismctl", TokenURL: iss.URL() + "/token",
		Token: &oauth2.Token{AccessToken: iss.MustMint(c), TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	run(ctl.ExitOK, "namespace", "list") // exit 0: the proxy took the token
	if err := os.Chmod(loginFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run(ctl.ExitUsage, "namespace", "list"); !strings.Contains(out, loginFile) {
		t.Errorf("list with a world-readable token file: %q, want an error naming it", out)
	}
}
