package backend

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/prism-suite/prism/harness/backend/definition"
)

// faultable is a defined instance: Outager and Pauser are offered by the
// wrappers below, as the file's faults say.
type faultable interface {
	Instance
	persistent() bool
	down(context.Context) error
	up(context.Context) error
	pause(context.Context) error
	unpause(context.Context) error
	users() (Users, error)
}

type (
	plainInst  struct{ f faultable }
	outageInst struct{ plainInst }
	pauseInst  struct{ plainInst }
	bothInst   struct{ outageInst }
)

var (
	_ Outager = outageInst{}
	_ Pauser  = pauseInst{}
	_ Outager = bothInst{}
	_ Pauser  = bothInst{}
)

// withFaults wraps f so that it implements Outager and Pauser as def's
// faults say.
func withFaults(f faultable, def *definition.Definition) Instance {
	p := plainInst{f}
	outage, pause := definition.Bool(def.Faults.Outage, true), definition.Bool(def.Faults.Pause, true)
	switch {
	case outage && pause:
		return bothInst{outageInst{p}}
	case outage:
		return outageInst{p}
	case pause:
		return pauseInst{p}
	}
	return p
}

func (p plainInst) Info() Info                                        { return p.f.Info() }
func (p plainInst) PluginConfig() (map[string]any, map[string]string) { return p.f.PluginConfig() }
func (p plainInst) Close(ctx context.Context) error                   { return p.f.Close(ctx) }
func (p plainInst) users() (Users, error)                             { return p.f.users() }

func (o outageInst) Down(ctx context.Context) error { return o.f.down(ctx) }
func (o outageInst) Up(ctx context.Context) error   { return o.f.up(ctx) }
func (o outageInst) Persistent() bool               { return o.f.persistent() }

func (p pauseInst) Pause(ctx context.Context) error   { return p.f.pause(ctx) }
func (p pauseInst) Unpause(ctx context.Context) error { return p.f.unpause(ctx) }

func (b bothInst) Pause(ctx context.Context) error   { return b.f.pause(ctx) }
func (b bothInst) Unpause(ctx context.Context) error { return b.f.unpause(ctx) }

// removeContainer force-removes container id (unpausing it first).
func removeContainer(ctx context.Context, cli client.APIClient, id string, paused bool, kind string, logf func(string, ...any)) error {
	logf("backend: removing %s container %.12s", kind, id)
	if paused {
		_, _ = cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
	}
	_, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// runner runs a command where the instance lives (in its container, or on
// this machine) and returns its exit code and output.
type runner func(ctx context.Context, cmd []string) (int, string, error)

// localRun runs cmd on this machine.
func localRun(ctx context.Context, cmd []string) (int, string, error) {
	out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out), nil
	}
	if err != nil {
		return -1, string(out), err
	}
	return 0, string(out), nil
}

// lookPath finds a binary (a path, or a name in PATH).
func lookPath(bin string) (string, error) { return exec.LookPath(bin) }

// defUsers are the users of a definition's users section.
type defUsers struct {
	def  *definition.Definition
	u    *definition.Users
	vars func() map[string]string
	run  runner

	mu    sync.Mutex
	added map[string][]string // usernames AddCredentials made for a user, when not the user itself
}

// definedUsers returns the users of def, or why there are none.
func definedUsers(def *definition.Definition, auth *Credentials, addr func() string, run runner) (Users, error) {
	switch {
	case def.Users == nil:
		return nil, fmt.Errorf("the backend file %s has no users section, so the %s instance cannot manage users", def.File, def.Name)
	case auth == nil:
		return nil, errNoAdmin(Kind(def.Name))
	}
	return &defUsers{def: def, u: def.Users, run: run, vars: func() map[string]string {
		v := credVars(auth)
		delete(v, "token")
		a := addr()
		v["addr"] = a
		v["host"], v["port"], _ = strings.Cut(a, ":")
		return v
	}}, nil
}

// do runs one users command with name, secret and scope.
func (d *defUsers) do(ctx context.Context, what string, cmd []string, name, secret, scope string) error {
	return d.doVars(ctx, what, cmd, map[string]string{"name": name, "secret": secret, "scope": scope})
}

// doVars runs one users command with the user's placeholders in uv.
func (d *defUsers) doVars(ctx context.Context, what string, cmd []string, uv map[string]string) error {
	v := d.vars()
	for k, x := range uv {
		v[k] = x
	}
	argv, err := definition.RenderAll(cmd, v)
	if err != nil {
		return err
	}
	code, out, err := d.run(ctx, argv)
	if err != nil {
		return fmt.Errorf("users %s: %w", what, err)
	}
	if code != 0 {
		return fmt.Errorf("users %s: exit %d: %s", what, code, handshakeTrunc(strings.TrimSpace(out)))
	}
	return nil
}

func (d *defUsers) ScopeConfig(scope string) map[string]any {
	out := map[string]any{}
	for k, v := range d.u.ScopeConfig {
		out[k], _ = definition.Render(v, map[string]string{"scope": scope})
	}
	return out
}

func (d *defUsers) AddUser(ctx context.Context, name, scope string) (Credentials, error) {
	c := Credentials{Username: name, Password: secret()}
	return c, d.do(ctx, "add", d.u.Add, name, c.Password, scope)
}

// AddCredentials makes credentials for the username add_credentials_user
// renders ({name}, the same user, by default), with a new password.
func (d *defUsers) AddCredentials(ctx context.Context, name string) (Credentials, error) {
	c := Credentials{Username: name, Password: secret()}
	if len(d.u.AddCredentials) == 0 {
		return c, errors.New("the backend file's users section has no add_credentials command")
	}
	if d.u.AddCredentialsUser != "" {
		u, err := definition.Render(d.u.AddCredentialsUser, map[string]string{"name": name})
		if err != nil {
			return c, fmt.Errorf("users add_credentials_user: %w", err)
		}
		if u == "" {
			return c, fmt.Errorf("users add_credentials_user: %q renders to an empty username for user %q", d.u.AddCredentialsUser, name)
		}
		c.Username = u
	}
	err := d.doVars(ctx, "add_credentials", d.u.AddCredentials,
		map[string]string{"name": name, "new_name": c.Username, "secret": c.Password, "scope": ""})
	if err == nil && c.Username != name {
		d.mu.Lock()
		if d.added == nil {
			d.added = map[string][]string{}
		}
		d.added[name] = append(d.added[name], c.Username)
		d.mu.Unlock()
	}
	return c, err
}

// owned returns user name and the users AddCredentials made for it.
func (d *defUsers) owned(name string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string{name}, d.added[name]...)
}

func (d *defUsers) Revoke(ctx context.Context, c Credentials) error {
	return d.do(ctx, "revoke", d.u.Revoke, c.Username, c.Password, "")
}

func (d *defUsers) Suspend(ctx context.Context, name string) error {
	if len(d.u.Suspend) == 0 {
		return errors.New("the backend file's users section has no suspend command")
	}
	for _, n := range d.owned(name) {
		if err := d.do(ctx, "suspend", d.u.Suspend, n, "", ""); err != nil {
			return err
		}
	}
	return nil
}

func (d *defUsers) Restore(ctx context.Context, name string) error {
	if len(d.u.Restore) == 0 {
		return errors.New("the backend file's users section has no restore command")
	}
	for _, n := range d.owned(name) {
		if err := d.do(ctx, "restore", d.u.Restore, n, "", ""); err != nil {
			return err
		}
	}
	return nil
}

func (d *defUsers) Authenticate(ctx context.Context, c Credentials) error {
	return d.do(ctx, "authenticate", d.u.Authenticate, c.Username, c.Password, "")
}

func (d *defUsers) TryOutside(ctx context.Context, c Credentials, other string) (error, error) {
	return d.do(ctx, "try_write", d.u.TryWrite, c.Username, c.Password, other),
		d.do(ctx, "try_admin", d.u.TryAdmin, c.Username, c.Password, other)
}

func (d *defUsers) PluginCredentials(c Credentials) map[string]string {
	vars := map[string]string{"user": c.Username, "password": c.Password, "token": c.Token, "host": "", "port": "", "addr": ""}
	m := map[string]string{}
	for k, v := range d.def.Plugin.Credentials {
		if r, _ := definition.Render(v, vars); r != "" {
			m[k] = r
		}
	}
	return m
}
