package postgres_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/postgres"
	"github.com/prism-suite/prism/backends/sdk"
)

// server is a PostgreSQL server the test started: initdb into a temp dir,
// then postgres on a free 127.0.0.1 port with a socket in the same dir,
// as user nobody when the test runs as root (postgres refuses root).
type server struct {
	addr, dir, password string
	cmd                 *exec.Cmd
}

// pgBin finds a PostgreSQL binary: PATH, then Debian's folder.
func pgBin(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) == 0 {
		t.Skipf("%s not found on PATH or in /usr/lib/postgresql/*/bin: install Debian's postgresql package to run this test", name)
	}
	return matches[len(matches)-1]
}

// asServerUser runs argv as nobody when the test runs as root.
func asServerUser(argv ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		argv = append([]string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"}, argv...)
	}
	return exec.Command(argv[0], argv[1:]...)
}

// startServer starts a server whose superuser "postgres" has password
// "admin-pw" over TCP (trust over the socket).
func startServer(t *testing.T) *server {
	t.Helper()
	initdb := pgBin(t, "initdb")
	dir, err := os.MkdirTemp("", "prism-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &server{dir: dir, password: "admin-pw"}
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte(s.password), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "-R", "nobody:nogroup", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v: %s", dir, err, out)
		}
	}
	init := asServerUser(initdb, "-D", dir+"/data", "-U", "postgres", "--pwfile="+dir+"/pw",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C")
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

// start runs postgres on s.addr and waits until it accepts the admin.
func (s *server) start(t *testing.T) {
	t.Helper()
	s.cmd = asServerUser(pgBin(t, "postgres"), "-D", s.dir+"/data", "-p", portOf(s.addr), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	logf, err := os.OpenFile(filepath.Join(s.dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the server has its own descriptor
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		d := postgres.New()
		err := d.Init(testCtx(t, 2*time.Second), config(s.addr, nil, s.admin()))
		_ = d.Close(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
			t.Fatalf("postgres did not accept connections within 30s: %v; log: %s", err, log)
		}
		time.Sleep(50 * time.Millisecond) // polling, with the deadline above
	}
}

// stop shuts the server down (fast shutdown: SIGINT) and waits for it.
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *server) admin() map[string]string {
	return map[string]string{"username": "postgres", "password": s.password}
}

// psql runs SQL as the superuser over the socket.
func (s *server) psql(t *testing.T, sql string) {
	t.Helper()
	cmd := asServerUser(pgBin(t, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.dir, "-p", portOf(s.addr), "-U", "postgres", "-d", "postgres", "-c", sql)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql %q: %v: %s", sql, err, out)
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func config(addr string, extra map[string]any, creds map[string]string) sdk.Config {
	v := map[string]any{"address": addr}
	for k, x := range extra {
		v[k] = x
	}
	return sdk.Config{Values: v, Credentials: creds}
}

// newDriver initializes a driver on its own table.
func newDriver(t *testing.T, s *server, extra map[string]any) *postgres.Driver {
	t.Helper()
	d := postgres.New()
	v := map[string]any{"table": fmt.Sprintf("t_%d", time.Now().UnixNano())}
	for k, x := range extra {
		v[k] = x
	}
	if err := d.Init(testCtx(t, 10*time.Second), config(s.addr, v, s.admin())); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}
