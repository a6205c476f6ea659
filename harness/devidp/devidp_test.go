package devidp_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/prism-suite/prism/harness/devidp"
)

// TestStartLoginRefreshRevoke runs the real binary: the harness's way in.
func TestStartLoginRefreshRevoke(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "prism-dev-idp")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/prism-suite/prism/reference/cmd/prism-dev-idp").CombinedOutput(); err != nil {
		t.Fatalf("build prism-dev-idp: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := devidp.DefaultOptions()
	o.Binary = bin
	o.Groups = []string{"prism:a:read"}
	idp, err := devidp.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Stop()
	if !strings.HasPrefix(idp.Issuer, "http://127.0.0.1:") {
		t.Errorf("issuer %q is not on 127.0.0.1", idp.Issuer)
	}
	tok, err := idp.DeviceLogin(ctx)
	if err != nil {
		t.Fatalf("device login: %v\nstderr:\n%s", err, idp.Stderr())
	}
	if strings.Count(tok.AccessToken, ".") != 2 || tok.RefreshToken == "" {
		t.Fatalf("want a JWT access token and a refresh token, got %+v", tok)
	}
	next, err := idp.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if err := idp.Revoke(ctx, next.RefreshToken, "refresh_token"); err != nil {
		t.Fatal(err)
	}
	_, err = idp.Refresh(ctx, next.RefreshToken)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("refresh after revocation: err = %v, want invalid_grant", err)
	}

	if _, err := devidp.Start(ctx, devidp.Options{Binary: filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), "task build") {
		t.Errorf("a missing binary: err = %v, want a hint to build it", err)
	}
}
