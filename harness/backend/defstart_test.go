package backend_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/redis/go-redis/v9"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/backend/definition"
)

// keystore is a backend the harness has never heard of, described only by
// a file: a Redis server (no "go:" Go code), so its readiness, version,
// plugin config, faults and users all come from the file.
const keystore = `name: %s
container:
  image: %s
  port: 6379/tcp
  command: [--appendonly, "yes", --save, ""]
  wait: {log: Ready to accept connections, port: 6379/tcp, timeout: 30s}
  version: {exec: [redis-server, --version], regexp: 'v=(\S+)'}
process:
  command: [redis-server, --port, "{port}", --bind, "{host}", --dir, "{dir}", --appendonly, "yes", --save, ""]
  wait: {log: Ready to accept connections, port: "{port}", timeout: 30s}
  version: {exec: ["{binary}", --version], regexp: 'v=(\S+)'}
plugin:
  config: {address: "{addr}", nested: {url: "redis://{host}:{port}/0"}}
  credentials: {username: "{user}", password: "{password}"}
auth:
  args: [--user, "{user}", "on", ">{password}", "~*", "&*", "+@all", --user, default, "off"]
users:
  add: [redis-cli, -p, "{port}", --user, "{user}", --pass, "{password}", --no-auth-warning, ACL, SETUSER, "{name}", reset, "on", ">{secret}", "~{scope}:*", "&{scope}:*", "+@all", "-@dangerous"]
  add_credentials: [redis-cli, -p, "{port}", --user, "{user}", --pass, "{password}", --no-auth-warning, ACL, SETUSER, "{name}", ">{secret}"]
  revoke: [redis-cli, -p, "{port}", --user, "{user}", --pass, "{password}", --no-auth-warning, ACL, SETUSER, "{name}", "<{secret}"]
  # redis-cli exits 0 on an error reply: the reply decides.
  authenticate: [sh, -c, "redis-cli -p {port} --user '{name}' --pass '{secret}' --no-auth-warning PING | grep -qx PONG"]
  try_write: [sh, -c, "redis-cli -p {port} --user '{name}' --pass '{secret}' --no-auth-warning SET '{scope}:probe' x | grep -qx OK"]
  try_admin: [sh, -c, "redis-cli -p {port} --user '{name}' --pass '{secret}' --no-auth-warning FLUSHALL | grep -qx OK"]
  suspend: [sh, -c, "redis-cli -p {port} --user '{user}' --pass '{password}' --no-auth-warning ACL SETUSER '{name}' off | grep -qx OK && redis-cli -p {port} --user '{user}' --pass '{password}' --no-auth-warning CLIENT KILL USER '{name}' >/dev/null"]
  restore: [sh, -c, "redis-cli -p {port} --user '{user}' --pass '{password}' --no-auth-warning ACL SETUSER '{name}' on | grep -qx OK"]
  scope_config: {key_prefix: "{scope}:"}
faults: {persistent: true%s}
`

// defineKeystore writes a keystore definition named name and loads it.
func defineKeystore(t *testing.T, name, extraFaults string) *definition.Definition {
	t.Helper()
	image := backend.DefaultOptions().RedisImage
	path := filepath.Join(t.TempDir(), "backend.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(keystore, name, image, extraFaults)), 0o644); err != nil {
		t.Fatal(err)
	}
	def, err := definition.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return def
}

func TestDefinedBackend(t *testing.T) {
	for _, provider := range []backend.Provider{backend.Process, backend.Container} {
		t.Run(string(provider), func(t *testing.T) {
			requireProvider(t, backend.Redis, provider)
			t.Parallel()
			name := "keystore-" + string(provider)
			def := defineKeystore(t, name, "")
			o := options(t, provider)
			o.Definition = def
			inst := start(t, backend.Kind(name), o)
			checkInfo(t, inst, backend.Kind(name), provider)
			in := inst.Info()
			if in.File != def.File || !strings.HasPrefix(in.ServerVersion, "7.") {
				t.Errorf("Info: file %q version %q, want %q and the version the file's command read", in.File, in.ServerVersion, def.File)
			}
			values, creds := inst.PluginConfig()
			nested, _ := values["nested"].(map[string]any)
			if values["address"] != in.Address || nested["url"] != "redis://"+in.Address+"/0" || len(creds) != 0 {
				t.Errorf("PluginConfig: got %v %v, want the address templated at every depth and no credentials", values, creds)
			}
			exerciseRedis(t, inst) // write, outage with persistence, pause, from the file
			if _, err := backend.UsersOf(inst); err == nil {
				t.Error("UsersOf: got users from an instance started without admin credentials")
			}
		})
	}
}

// TestDefinedUsers drives the file's users commands (redis-cli) against a
// server started with the file's auth args.
func TestDefinedUsers(t *testing.T) {
	requireProvider(t, backend.Redis, backend.Process)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli is not on PATH")
	}
	t.Parallel()
	o := options(t, backend.Process)
	o.Definition = defineKeystore(t, "keystore-users", "")
	o.Auth = &backend.Credentials{Username: "admin", Password: "admin-secret"}
	inst := start(t, "keystore-users", o)
	_, creds := inst.PluginConfig()
	if creds["username"] != "admin" || creds["password"] != "admin-secret" {
		t.Errorf("plugin credentials: got %v, want the admin's", creds)
	}
	u, err := backend.UsersOf(inst)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 20*time.Second)
	alice, err := u.AddUser(ctx, "alice", "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Authenticate(ctx, alice); err != nil {
		t.Errorf("Authenticate(alice): %v", err)
	}
	if err := u.Authenticate(ctx, backend.Credentials{Username: "alice", Password: "wrong"}); err == nil {
		t.Error("Authenticate with a wrong password: got nil, want refused")
	}
	write, admin := u.TryOutside(ctx, alice, "b")
	if write == nil || admin == nil {
		t.Errorf("TryOutside: got write %v, admin %v; want both refused", write, admin)
	}
	second, err := u.AddCredentials(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Revoke(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if u.Authenticate(ctx, alice) == nil || u.Authenticate(ctx, second) != nil {
		t.Error("after Revoke(first): want the first password refused and the second accepted")
	}
	if err := u.Suspend(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if u.Authenticate(ctx, second) == nil {
		t.Error("after Suspend: want alice refused")
	}
	if err := u.Restore(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := u.Authenticate(ctx, second); err != nil {
		t.Errorf("after Restore: %v", err)
	}
	if got := u.ScopeConfig("a"); got["key_prefix"] != "a:" {
		t.Errorf("ScopeConfig: got %v", got)
	}
	if got := u.PluginCredentials(second); got["username"] != "alice" || got["password"] != second.Password {
		t.Errorf("PluginCredentials: got %v, want the file's credentials templated", got)
	}
}

// TestDefinedFaultsOff checks that faults: {outage: false, pause: false}
// takes Outager and Pauser away.
func TestDefinedFaultsOff(t *testing.T) {
	requireProvider(t, backend.Redis, backend.Process)
	t.Parallel()
	o := options(t, backend.Process)
	o.Definition = defineKeystore(t, "keystore-nofaults", ", outage: false, pause: false")
	inst := start(t, "keystore-nofaults", o)
	if _, ok := inst.(backend.Outager); ok {
		t.Error("implements Outager with outage: false")
	}
	if _, ok := inst.(backend.Pauser); ok {
		t.Error("implements Pauser with pause: false")
	}
	c := redis.NewClient(&redis.Options{Addr: inst.Info().Address})
	defer c.Close()
	if err := c.Ping(ctxTimeout(t, 5*time.Second)).Err(); err != nil {
		t.Errorf("PING: %v", err)
	}
}

// badStart starts a definition that must fail, and checks the error: a
// harness error naming the file, the provider and each of says, returned
// within the file's wait timeout (plus slack for a loaded machine).
func badStart(t *testing.T, def *definition.Definition, provider backend.Provider, timeout time.Duration, says ...string) {
	t.Helper()
	o := options(t, provider)
	o.Definition = def
	began := time.Now()
	inst, err := backend.Start(context.Background(), backend.Kind(def.Name), o)
	took := time.Since(began)
	if inst != nil {
		inst.Close(context.Background())
		t.Error("Start returned an instance with its error: what was started must be removed")
	}
	var he *backend.HarnessError
	if !errors.As(err, &he) {
		t.Fatalf("got %v, want a *HarnessError", err)
	}
	for _, s := range append([]string{"backend file " + def.File, "provider " + string(provider)}, says...) {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not say %q:\n%v", s, err)
		}
	}
	if took > timeout+15*time.Second {
		t.Errorf("took %s to fail; the file's timeout is %s", took, timeout)
	}
	t.Logf("failed in %s: %v", took.Round(time.Millisecond), err)
}

// noContainerOf fails t if a container labelled with kind is left.
func noContainerOf(t *testing.T, cli *client.Client, kind string) {
	t.Helper()
	list, err := cli.ContainerList(ctxTimeout(t, 5*time.Second), client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", backend.LabelHarness+"=true").Add("label", "prism.kind="+kind),
	})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	if len(list.Items) > 0 {
		t.Errorf("%d container(s) of %s left after a failed start: %s", len(list.Items), kind, list.Items[0].ID)
	}
}

// writeDef writes a definition and loads it.
func writeDef(t *testing.T, text string) *definition.Definition {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backend.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	def, err := definition.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return def
}

func TestDefinitionBadInput(t *testing.T) {
	image := backend.DefaultOptions().RedisImage
	t.Run("missing image", func(t *testing.T) {
		dockerClient(t)
		t.Parallel()
		def := writeDef(t, `name: noimage
container: {image: prism-offline/no-such-image:0, port: 6379, wait: {port: 6379/tcp}}
plugin: {config: {}}
`)
		badStart(t, def, backend.Container, 0, "image prism-offline/no-such-image:0 is not present", backend.EnvNoPull)
	})
	t.Run("container wait that never succeeds", func(t *testing.T) {
		requireProvider(t, backend.Redis, backend.Container)
		cli := dockerClient(t)
		t.Parallel()
		def := writeDef(t, fmt.Sprintf(`name: neverready
container: {image: %s, port: 6379, wait: {log: this line never comes, timeout: 2s}}
plugin: {config: {}}
`, image))
		badStart(t, def, backend.Container, 2*time.Second, `waited 2s for log line "this line never comes"`,
			"last lines of the container's log", "Ready to accept connections")
		noContainerOf(t, cli, "neverready")
	})
	t.Run("container port never opened", func(t *testing.T) {
		requireProvider(t, backend.Redis, backend.Container)
		cli := dockerClient(t)
		t.Parallel()
		// The server listens on 7000 inside; 6379 is published but never opened.
		def := writeDef(t, fmt.Sprintf(`name: noport
container: {image: %s, port: 6379, command: [--port, "7000"], wait: {port: 6379/tcp, timeout: 2s}}
plugin: {config: {}}
`, image))
		badStart(t, def, backend.Container, 2*time.Second, "waited 2s for port 6379/tcp open", "Ready to accept connections")
		noContainerOf(t, cli, "noport")
	})
	t.Run("process wait that never succeeds", func(t *testing.T) {
		t.Parallel()
		def := writeDef(t, `name: neverready-process
process:
  command: [sh, -c, "echo hello from the server on {port}; exec sleep 31.4159"]
  wait: {log: this line never comes, timeout: 1s}
plugin: {config: {}}
`)
		badStart(t, def, backend.Process, time.Second, `waited 1s for log line "this line never comes"`,
			"last lines of the server's log", "hello from the server on")
		noProcess(t, "31.4159")
	})
	t.Run("process port never opened", func(t *testing.T) {
		t.Parallel()
		def := writeDef(t, `name: noport-process
process:
  command: [sh, -c, "echo server-up-marker; exec sleep 31.2718"]
  wait: {port: "{port}", timeout: 1s}
plugin: {config: {}}
`)
		badStart(t, def, backend.Process, time.Second, "waited 1s for port {port} open", "still waiting for port 127.0.0.1:", "server-up-marker")
		noProcess(t, "31.2718")
	})
	t.Run("no such provider in the file", func(t *testing.T) {
		t.Parallel()
		def := writeDef(t, "name: onlyexternal\nexternal: {address_env: PRISM_TEST_NO_SUCH_ADDR}\nplugin: {config: {}}\n")
		badStart(t, def, backend.Container, 0, "the file has no container section")
	})
	t.Run("external without its address", func(t *testing.T) {
		t.Parallel()
		def := writeDef(t, "name: onlyexternal\nexternal: {address_env: PRISM_TEST_NO_SUCH_ADDR}\nplugin: {config: {}}\n")
		badStart(t, def, backend.External, 0, "set PRISM_TEST_NO_SUCH_ADDR")
	})
}

// noProcess fails t if a process whose command line holds marker runs.
func noProcess(t *testing.T, marker string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), marker) {
			t.Errorf("a server process is left after a failed start: %s: %q", p, b)
		}
	}
}

// TestDefinedHTTPWait waits for nats-server's monitoring endpoint with
// testcontainers-go's HTTP strategy (container) and the harness's (process).
func TestDefinedHTTPWait(t *testing.T) {
	for _, provider := range []backend.Provider{backend.Process, backend.Container} {
		t.Run(string(provider), func(t *testing.T) {
			requireProvider(t, backend.NATS, provider)
			t.Parallel()
			o := options(t, provider)
			o.Definition = writeDef(t, fmt.Sprintf(`name: monitored
container:
  image: %s
  port: 4222
  command: [-js, -m, "8222"]
  wait: {http: {port: 8222/tcp, path: /healthz}, timeout: 30s}
process:
  command: [%s, -a, "{host}", -p, "{port}", -m, "0", -js, -sd, "{dir}"]
  wait: {port: "{port}", exec: [sh, -c, "grep -q 'Server is ready' {dir}/server.log"], timeout: 30s}
plugin: {config: {url: "nats://{addr}"}}
`, o.NATSImage, o.NATSServerPath))
			inst := start(t, "monitored", o)
			exerciseNATS(t, inst)
		})
	}
}

// TestBuiltinsStartFromTheirFile checks that redis and nats in a container
// or a process come from their backend.yaml (redis also with an admin ACL
// user), which the report then names.
func TestBuiltinsStartFromTheirFile(t *testing.T) {
	for _, tc := range []struct {
		kind backend.Kind
		auth *backend.Credentials
	}{
		{backend.Redis, nil},
		{backend.Redis, &backend.Credentials{Username: "admin", Password: "pw"}},
		{backend.NATS, nil},
	} {
		for _, provider := range []backend.Provider{backend.Process, backend.Container} {
			t.Run(fmt.Sprintf("%s/%s/auth=%v", tc.kind, provider, tc.auth != nil), func(t *testing.T) {
				requireProvider(t, tc.kind, provider)
				t.Parallel()
				o := options(t, provider)
				o.Auth = tc.auth
				inst := start(t, tc.kind, o)
				if got, want := inst.Info().File, "backends/"+string(tc.kind)+"/backend.yaml"; got != want {
					t.Errorf("Info.File: got %q, want %q", got, want)
				}
			})
		}
	}
}

// TestDefinedAuto checks what auto picks for a definition, and that it says
// why.
func TestDefinedAuto(t *testing.T) {
	t.Run("container when docker answers and the image is present", func(t *testing.T) {
		requireProvider(t, backend.Redis, backend.Container)
		t.Parallel()
		o := options(t, backend.Auto)
		o.Definition = defineKeystore(t, "keystore-auto", "")
		inst := start(t, "keystore-auto", o)
		if in := inst.Info(); in.Provider != backend.Container || !strings.Contains(in.Reason, "is present") {
			t.Errorf("got %s (%s), want container because the image is present", in.Provider, in.Reason)
		}
	})
	t.Run("process when the image is missing and pulling is off", func(t *testing.T) {
		requireProvider(t, backend.Redis, backend.Process)
		t.Parallel()
		def := writeDef(t, `name: keystore-auto-process
container: {image: prism-offline/no-such-image:0, port: 6379, wait: {port: 6379/tcp}}
process:
  command: [redis-server, --port, "{port}", --bind, "{host}", --dir, "{dir}", --save, ""]
  wait: {port: "{port}"}
plugin: {config: {address: "{addr}"}}
`)
		o := options(t, backend.Auto)
		o.Definition = def
		inst := start(t, "keystore-auto-process", o)
		if in := inst.Info(); in.Provider != backend.Process || !strings.Contains(in.Reason, "not present") {
			t.Errorf("got %s (%s), want process, saying the image is not present", in.Provider, in.Reason)
		}
	})
}
