package login_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	hdevidp "github.com/prism-suite/prism/harness/devidp"
	"github.com/prism-suite/prism/reference/devidp"
	"github.com/prism-suite/prism/reference/login"
)

func startIdP(t *testing.T) *devidp.Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := devidp.DefaultConfig()
	cfg.Issuer = "http://" + ln.Addr().String()
	cfg.PollInterval = time.Second
	p, err := devidp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

// loginAsUser runs login.Login, approving the device through the
// provider's form when prompted.
func loginAsUser(t *testing.T, issuer string) *login.File {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := login.Login(ctx, login.Options{Issuer: issuer, Prompt: func(da *oauth2.DeviceAuthResponse) error {
		return hdevidp.SubmitDeviceForm(ctx, http.DefaultClient, da.VerificationURIComplete, devidp.DefaultUser, devidp.DefaultPassword, "approve")
	}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSaveWritesOwnerOnlyAndLoadRefusesWhatOthersMayRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home", ".prism")
	path := filepath.Join(dir, "token")
	f := &login.File{Issuer: "http://127.0.0.1:1", ClientID: "prismctl", TokenURL: "http://127.0.0.1:1/oauth/token",
		Token: &oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: time.Now().Add(time.Hour)}}
	if err := login.Save(path, f); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %#o", p, st.Mode().Perm(), err, want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the token directory holds %d files, want only the token (no temporary file left)", len(ents))
	}
	got, err := login.Load(path)
	if err != nil || got.Token.RefreshToken != "r" || got.Issuer != f.Issuer {
		t.Fatalf("Load = %+v, %v", got, err)
	}

	for _, mode := range []os.FileMode{0o644, 0o640, 0o620, 0o602} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err = login.Load(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "0"+strconv.FormatUint(uint64(mode), 8)) {
			t.Errorf("a token file of mode %#o: err = %v, want a refusal naming the file and the mode", mode, err)
		}
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("garbage{"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = login.Load(path)
	if err == nil || !strings.Contains(err.Error(), "is not a token file") || !errors.Is(err, login.ErrLoginNeeded) {
		t.Errorf("garbage: err = %v, want 'is not a token file' and ErrLoginNeeded", err)
	}
	if err := os.WriteFile(path, []byte(`{"issuer":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = login.Load(path); err == nil || !strings.Contains(err.Error(), "token.access_token is missing") {
		t.Errorf("a JSON file without a token: err = %v", err)
	}
	_, err = login.Load(filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) || !errors.Is(err, login.ErrLoginNeeded) {
		t.Errorf("a missing file: err = %v, want ErrNotExist and ErrLoginNeeded", err)
	}
}

func TestExpiredTokenWithoutRefreshTokenSaysRunLogin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	f := &login.File{Issuer: "http://127.0.0.1:1", ClientID: "prismctl", TokenURL: "http://127.0.0.1:1/oauth/token",
		Token: &oauth2.Token{AccessToken: "a", Expiry: time.Now().Add(-time.Minute)}}
	if err := login.Save(path, f); err != nil {
		t.Fatal(err)
	}
	ts, err := login.TokenSource(context.Background(), path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.Token()
	if !errors.Is(err, login.ErrLoginNeeded) || !strings.Contains(err.Error(), "run prismctl login") || !strings.Contains(err.Error(), "no refresh token") {
		t.Errorf("err = %v, want one saying there is no refresh token and to run prismctl login", err)
	}
}

func TestLoginRefreshesBeforeExpiryAndWritesBack(t *testing.T) {
	p := startIdP(t)
	path := filepath.Join(t.TempDir(), "token")
	f := loginAsUser(t, p.Issuer())
	if f.Token.RefreshToken == "" || f.RevocationURL == "" {
		t.Fatalf("login gave %+v: want a refresh token and a revocation endpoint", f)
	}
	if err := login.Save(path, f); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Valid for longer than early: the file's token, no refresh.
	ts, err := login.TokenSource(ctx, path, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := ts.Token(); err != nil || tok.AccessToken != f.Token.AccessToken {
		t.Fatalf("a fresh token: got a different one or %v", err)
	}

	// Within early of its expiry (5 minutes): refreshed, and written back.
	ts, err = login.TokenSource(ctx, path, 10*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok.AccessToken == f.Token.AccessToken || tok.RefreshToken == f.Token.RefreshToken {
		t.Fatal("the token was not refreshed")
	}
	saved, err := login.Load(path)
	if err != nil || saved.Token.RefreshToken != tok.RefreshToken || saved.Token.AccessToken != tok.AccessToken {
		t.Fatalf("the refreshed token was not written back: %v", err)
	}

	// Logout revokes the (new) refresh token and removes the file.
	removed, err := login.Logout(ctx, path, nil)
	if err != nil || !removed {
		t.Fatalf("Logout = %v, %v", removed, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the token file is still there: %v", err)
	}
	if err := login.Save(path, saved); err != nil {
		t.Fatal(err)
	}
	ts, err = login.TokenSource(ctx, path, 10*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.Token()
	if !errors.Is(err, login.ErrLoginNeeded) || !strings.Contains(err.Error(), "refused the refresh token") {
		t.Errorf("a revoked refresh token: err = %v, want a refusal that says to run prismctl login", err)
	}
	after, err := login.Load(path)
	if err != nil || after.Token.RefreshToken != saved.Token.RefreshToken {
		t.Errorf("a failed refresh changed the token file: %v", err)
	}
}

func TestTwoProcessesRefreshingAtOnceBothEndWithAToken(t *testing.T) {
	p := startIdP(t)
	path := filepath.Join(t.TempDir(), "token")
	if err := login.Save(path, loginAsUser(t, p.Issuer())); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Both read the file before either refreshes, as two prismctl would.
	a, err := login.TokenSource(ctx, path, 10*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := login.TokenSource(ctx, path, 10*time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	ta, err := a.Token()
	if err != nil {
		t.Fatalf("first refresh: %v", err)
	}
	tb, err := b.Token()
	if err != nil {
		t.Fatalf("second refresh, with the refresh token the first one rotated: %v", err)
	}
	if tb.AccessToken != ta.AccessToken {
		t.Error("the second source should take the token the first wrote")
	}
}

// A prompt that fails (a code that could not be shown or approved) ends
// Login with its error at once, not after polling until the code expires.
func TestLoginStopsWhenThePromptFails(t *testing.T) {
	p := startIdP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := login.Login(ctx, login.Options{Issuer: p.Issuer(), Prompt: func(*oauth2.DeviceAuthResponse) error {
		return errors.New("no terminal to show the code on")
	}})
	if err == nil || !strings.Contains(err.Error(), "no terminal to show the code on") || time.Since(start) > 5*time.Second {
		t.Fatalf("Login with a failing prompt: %v after %v; want its error at once", err, time.Since(start))
	}
}
