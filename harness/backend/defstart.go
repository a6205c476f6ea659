package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	natsplugin "github.com/prism-suite/prism/backends/nats"
	redisplugin "github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/harness/backend/definition"
)

// This file starts instances from a backend definition file
// (harness/backend/definition): the container, process and external
// providers of any backend, and the container and process providers of the
// built-in redis and nats, whose definitions are embedded.

var (
	builtinOnce sync.Once
	builtinDefs map[Kind]*definition.Definition
	builtinErr  error
)

// BuiltinDefinition returns the embedded definition of a built-in backend
// (backends/redis/backend.yaml, backends/nats/backend.yaml).
func BuiltinDefinition(kind Kind) (*definition.Definition, error) {
	builtinOnce.Do(func() {
		builtinDefs = map[Kind]*definition.Definition{}
		for kind, data := range map[Kind][]byte{Redis: redisplugin.BackendDefinition, NATS: natsplugin.BackendDefinition} {
			d, err := definition.Parse("backends/"+string(kind)+"/backend.yaml", data)
			if err != nil {
				builtinErr = errors.Join(builtinErr, err)
				continue
			}
			builtinDefs[kind] = d
		}
	})
	if d, ok := builtinDefs[kind]; ok {
		return d, nil
	}
	if builtinErr != nil {
		return nil, builtinErr
	}
	return nil, fmt.Errorf("no built-in definition of backend %q", kind)
}

// fromFile reports whether a built-in instance of kind with o starts from
// its backend.yaml: always without credentials, and for redis with an admin
// ACL user (the file's auth args; its users are redisUsers, Go). NATS users
// (a users file reloaded on SIGHUP) and redis's requirepass stay Go.
func fromFile(kind Kind, o Options) bool {
	return o.Auth == nil || (kind == Redis && o.Auth.redisACLUser())
}

// builtinUsers is the Go user manager of a built-in instance started from
// its file (redis with an admin ACL user), or nil.
func builtinUsers(def *definition.Definition, addr func() string, auth *Credentials) *redisUsers {
	if def.Go != "redis" {
		return nil
	}
	return newRedisUsers(addr, auth)
}

// startBuiltin starts a built-in backend's container or process from its
// definition (o.Definition when it describes kind, else the embedded one).
func startBuiltin(ctx context.Context, kind Kind, provider Provider, o Options, reason string) (Instance, error) {
	def := o.Definition
	if def == nil {
		var err error
		if def, err = BuiltinDefinition(kind); err != nil {
			return nil, &HarnessError{Err: err}
		}
	}
	s := &defStart{def: def, kind: kind, provider: provider, o: o, reason: reason}
	if provider == Container {
		if def.Container == nil {
			return nil, s.fail("the file has no container section")
		}
		return s.startContainer(ctx)
	}
	if def.Process == nil {
		return nil, s.fail("the file has no process section")
	}
	return s.startProcess(ctx)
}

// defStart is what every provider of a definition needs.
type defStart struct {
	def      *definition.Definition
	kind     Kind
	provider Provider
	o        Options
	reason   string
}

// where names the file and provider in errors.
func (s *defStart) where() string {
	return fmt.Sprintf("backend file %s, provider %s", s.def.File, s.provider)
}

// fail returns a harness error naming the file and provider.
func (s *defStart) fail(format string, args ...any) error {
	return harnessErr("%s: %s", s.where(), fmt.Sprintf(format, args...))
}

// credVars are the placeholders of the credentials a started instance
// requires (the admin's, in auth runs).
func credVars(auth *Credentials) map[string]string {
	v := map[string]string{"user": "", "password": "", "token": ""}
	if auth != nil {
		v["user"], v["password"], v["token"] = auth.Username, auth.Password, auth.Token
	}
	return v
}

// startDefinition starts an instance of def with provider (container,
// process, external; auto picks one).
func startDefinition(ctx context.Context, def *definition.Definition, o Options) (Instance, error) {
	s := &defStart{def: def, kind: Kind(def.Name), provider: o.Provider, o: o,
		reason: "provider " + string(o.Provider) + " was requested"}
	if s.provider == Auto {
		s.provider, s.reason = chooseDefined(ctx, def, o)
		o.Logf("backend: auto chose %s for %s: %s", s.provider, def.Name, s.reason)
	}
	if o.Auth != nil && def.Auth == nil && s.provider != External {
		return nil, s.fail("the run needs an instance that requires credentials (auth), but the file has no auth section")
	}
	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	began := time.Now()
	var (
		inst Instance
		err  error
	)
	switch s.provider {
	case Container:
		if def.Container == nil {
			return nil, s.fail("the file has no container section")
		}
		inst, err = s.startContainer(ctx)
	case Process:
		if def.Process == nil {
			return nil, s.fail("the file has no process section")
		}
		inst, err = s.startProcess(ctx)
	case External:
		if def.External == nil {
			return nil, s.fail("the file has no external section")
		}
		inst, err = s.startExternal(ctx)
	default:
		return nil, s.fail("provider %q is not one of auto, container, process, external", s.provider)
	}
	if err != nil {
		o.Logf("backend: %s %s did not start: %v", def.Name, s.provider, err)
		return inst, err
	}
	in := inst.Info()
	o.Logf("backend: %s %s ready at %s (%s) in %s", def.Name, s.provider, in.Address, in.ServerVersion,
		time.Since(began).Round(time.Millisecond))
	return inst, nil
}

// chooseDefined decides what auto means for a definition: container when
// docker answers and the image is present, pullable or built; else process
// when its binary is found; else external when its address is set.
func chooseDefined(ctx context.Context, def *definition.Definition, o Options) (Provider, string) {
	var why []string
	if c := def.Container; c != nil {
		dctx, cancel := context.WithTimeout(ctx, autoDockerBudget)
		p, err := dockerProvider(dctx)
		cancel()
		switch {
		case err != nil:
			why = append(why, fmt.Sprintf("no docker daemon: %v", err))
		case c.Build != nil:
			p.Close()
			return Container, "docker answers and the image is built from " + def.Path(c.Build.Context)
		default:
			image := definedImage(def, o)
			dctx, cancel := context.WithTimeout(ctx, autoDockerBudget)
			_, err := p.Client().ImageInspect(dctx, image)
			cancel()
			p.Close()
			if err == nil {
				return Container, fmt.Sprintf("docker answers and image %s is present", image)
			}
			if !o.NoPull {
				return Container, fmt.Sprintf("docker answers and image %s will be pulled", image)
			}
			why = append(why, fmt.Sprintf("image %s is not present and pulling is off (%s)", image, EnvNoPull))
		}
	}
	if p := def.Process; p != nil {
		bin := definedBinary(def, o)
		if path, err := lookPath(bin); err == nil {
			return Process, strings.Join(append(why, "process with "+path), "; ")
		}
		why = append(why, bin+" is not on PATH")
	}
	if e := def.External; e != nil && os.Getenv(e.AddressEnv) != "" {
		return External, strings.Join(append(why, "external at $"+e.AddressEnv), "; ")
	}
	if def.Container != nil {
		return Container, strings.Join(append(why, "trying container"), "; ")
	}
	if def.Process != nil {
		return Process, strings.Join(append(why, "trying process"), "; ")
	}
	return External, strings.Join(append(why, "trying external"), "; ")
}

// definedImage is the container image: $image_env, the built-in options'
// image, or image.
func definedImage(def *definition.Definition, o Options) string {
	c := def.Container
	if def.Go != "" {
		// Options.RedisImage and NATSImage, which default to $image_env.
		return o.Image(Kind(def.Name))
	}
	if c.ImageEnv != "" {
		if v := os.Getenv(c.ImageEnv); v != "" {
			return v
		}
	}
	return c.Image
}

// definedBinary is the process's binary: $binary_env, the built-in options'
// path, or command[0].
func definedBinary(def *definition.Definition, o Options) string {
	p := def.Process
	// Options.RedisServerPath and NATSServerPath default to $binary_env.
	switch def.Go {
	case "redis":
		return o.RedisServerPath
	case "nats":
		return o.NATSServerPath
	}
	if p.BinaryEnv != "" {
		if v := os.Getenv(p.BinaryEnv); v != "" {
			return v
		}
	}
	return p.Command[0]
}

// definedConfig renders the plugin config and credentials for an instance.
func definedConfig(def *definition.Definition, addr string, auth *Credentials, extra map[string]string) (map[string]any, map[string]string) {
	host, port, _ := net.SplitHostPort(addr)
	vars := credVars(auth)
	vars["host"], vars["port"], vars["addr"] = host, port, addr
	for k, v := range extra {
		vars[k] = v
	}
	values := map[string]any{}
	for k, v := range def.Plugin.Config {
		r, _ := definition.RenderValue(v, vars) // placeholders were checked at load
		values[k] = r
	}
	creds := map[string]string{}
	for k, v := range def.Plugin.Credentials {
		if r, _ := definition.Render(v, vars); r != "" {
			creds[k] = r
		}
	}
	return values, creds
}

// pickVersion applies a version's regexp to a command's output.
func pickVersion(v *definition.Version, out string) string {
	out = strings.TrimSpace(out)
	if v.Regexp == "" {
		line, _, _ := strings.Cut(out, "\n")
		return strings.TrimSpace(line)
	}
	m := regexp.MustCompile(v.Regexp).FindStringSubmatch(out)
	switch {
	case m == nil:
		return "unknown (" + handshakeTrunc(out) + ")"
	case len(m) > 1:
		return m[1]
	}
	return m[0]
}

func handshakeTrunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// lastLines returns the last n lines of r's text.
func lastLines(r io.Reader, n int) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4<<20))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitWhat describes a wait for errors: "log line \"x\", port 5432/tcp".
func waitWhat(w definition.Wait) string {
	var parts []string
	if w.Log != "" {
		occ := ""
		if w.LogOccurrences > 1 {
			occ = fmt.Sprintf(" (%d times)", w.LogOccurrences)
		}
		parts = append(parts, fmt.Sprintf("log line %q%s", w.Log, occ))
	}
	if w.Port != "" {
		parts = append(parts, "port "+w.Port+" open")
	}
	if len(w.Exec) > 0 {
		parts = append(parts, fmt.Sprintf("command %q exiting 0", w.Exec))
	}
	if h := w.HTTP; h != nil {
		parts = append(parts, fmt.Sprintf("HTTP GET %s on port %s answering %d", cmpOr(h.Path, "/"), h.Port, cmpOr(h.Status, 200)))
	}
	return strings.Join(parts, ", ")
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// waitTimeout is the wait's timeout, bounded by the start timeout.
func waitTimeout(w definition.Wait, o Options) time.Duration {
	t := w.Timeout.Std()
	if t <= 0 {
		t = DefaultStartTimeout
	}
	return min(t, o.StartTimeout)
}

// portOpen reports whether something accepts a connection on addr and
// keeps it open a moment (a port published by docker but not listened on
// inside the container is accepted by docker's proxy, which closes it once
// its own connection inside is refused). The moment is 500 ms: on a busy
// machine the proxy took more than the 50 ms it once was, and a port no
// server listened on passed for open (CI, 2026-12-03).
func portOpen(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	var b [1]byte
	_, err = c.Read(b[:])
	var ne net.Error
	return err == nil || (errors.As(err, &ne) && ne.Timeout())
}
