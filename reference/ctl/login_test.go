package ctl_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	hdevidp "github.com/prism-suite/prism/harness/devidp"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/reference/ctl"
	"github.com/prism-suite/prism/reference/devidp"
	"github.com/prism-suite/prism/reference/login"
)

// recorder is a KeyValue server that records each Get's authorization.
type recorder struct {
	keyvaluev1.UnimplementedKeyValueServer
	mu    sync.Mutex
	authz []string
}

func (r *recorder) Get(ctx context.Context, _ *keyvaluev1.GetRequest) (*keyvaluev1.GetResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.authz = append(r.authz, strings.Join(md.Get("authorization"), ","))
	return &keyvaluev1.GetResponse{Value: []byte("v")}, nil
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.authz...)
}

// approver is prismctl's stderr: when the verification URL appears, it
// approves the device through the provider's form, as the user would.
type approver struct {
	t    *testing.T
	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
	done chan error
}

var completeRE = regexp.MustCompile(`\(or open (\S+)\)`)

func (a *approver) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf.Write(p)
	if m := completeRE.FindStringSubmatch(a.buf.String()); m != nil {
		a.once.Do(func() {
			go func() {
				a.done <- hdevidp.SubmitDeviceForm(context.Background(), http.DefaultClient, m[1], devidp.DefaultUser, devidp.DefaultPassword, "approve")
			}()
		})
	}
	return len(p), nil
}

func (a *approver) String() string { a.mu.Lock(); defer a.mu.Unlock(); return a.buf.String() }

func start(t *testing.T) (issuer, addr string, rec *recorder) {
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
	hs := &http.Server{Handler: p}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec = &recorder{}
	gs := grpc.NewServer()
	keyvaluev1.RegisterKeyValueServer(gs, rec)
	go gs.Serve(gl)
	t.Cleanup(gs.Stop)
	return cfg.Issuer, gl.Addr().String(), rec
}

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := ctl.Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestLoginThenCallsCarryTheTokenAndLogoutRemovesIt(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv(login.EnvTokenFile, "")
	t.Setenv(ctl.EnvToken, "")
	issuer, addr, rec := start(t)

	a := &approver{t: t, done: make(chan error, 1)}
	var out bytes.Buffer
	if code := ctl.Main([]string{"login", "--issuer", issuer}, &out, a); code != ctl.ExitOK {
		t.Fatalf("login: exit %d; stderr:\n%s", code, a)
	}
	if err := <-a.done; err != nil {
		t.Fatalf("approve: %v", err)
	}
	path := filepath.Join(home, ".prism", "token")
	if !strings.Contains(out.String(), "token saved to "+path) {
		t.Errorf("login stdout %q does not name %s", out.String(), path)
	}
	f, err := login.Load(path)
	if err != nil {
		t.Fatal(err)
	}

	if code, _, stderr := run("kv", "get", "k", "--addr", addr); code != ctl.ExitOK {
		t.Fatalf("kv get: exit %d: %s", code, stderr)
	}
	if got := rec.seen(); len(got) != 1 || got[0] != "Bearer "+f.Token.AccessToken {
		t.Fatalf("the call carried %q, want the token of the file", got)
	}
	if code, _, _ := run("kv", "get", "k", "--addr", addr, "--token", "explicit"); code != ctl.ExitOK || rec.seen()[1] != "Bearer explicit" {
		t.Errorf("--token: the call carried %q", rec.seen())
	}

	// A token file others may read: refused before any call.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run("kv", "get", "k", "--addr", addr)
	if code != ctl.ExitFailed || !strings.Contains(stderr, path) || !strings.Contains(stderr, "0644") {
		t.Errorf("a 0644 token file: exit %d, stderr %q; want 1 naming the file and the mode", code, stderr)
	}
	if n := len(rec.seen()); n != 2 {
		t.Errorf("a call was made with a refused token file (%d calls)", n)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := run("logout")
	if code != ctl.ExitOK || !strings.Contains(stdout, "logged out") {
		t.Fatalf("logout: exit %d, %q %q", code, stdout, stderr)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("logout left %s: %v", path, err)
	}
	if code, _, _ := run("kv", "get", "k", "--addr", addr); code != ctl.ExitOK || rec.seen()[2] != "" {
		t.Errorf("after logout a call carried %q, want no token", rec.seen())
	}
}

func TestExpiredTokenWithoutRefreshSaysRunLoginAndGarbageIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	t.Setenv(login.EnvTokenFile, path)
	t.Setenv(ctl.EnvToken, "")
	_, addr, rec := start(t)
	f := &login.File{Issuer: "http://127.0.0.1:1", ClientID: "prismctl", TokenURL: "http://127.0.0.1:1/oauth/token",
		Token: &oauth2.Token{AccessToken: "old", Expiry: time.Now().Add(-time.Minute)}}
	if err := login.Save(path, f); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run("kv", "get", "k", "--addr", addr)
	if code != ctl.ExitFailed || !strings.Contains(stderr, "Unauthenticated") || !strings.Contains(stderr, "run prismctl login") {
		t.Errorf("an expired token without a refresh token: exit %d, stderr %q", code, stderr)
	}
	if err := os.WriteFile(path, []byte("\x00garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run("kv", "get", "k", "--addr", addr)
	if code != ctl.ExitFailed || !strings.Contains(stderr, "is not a token file") || !strings.Contains(stderr, path) {
		t.Errorf("a garbage token file: exit %d, stderr %q", code, stderr)
	}
	if n := len(rec.seen()); n != 0 {
		t.Errorf("%d calls reached the server without a usable token", n)
	}
}
