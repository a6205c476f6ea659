package definition

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The placeholders each kind of field may use.
var (
	// PluginVars may appear in Plugin.Config and Plugin.Credentials.
	PluginVars = []string{"host", "port", "addr", "user", "password", "token"}
	// ContainerVars may appear in a container's env, entrypoint, command,
	// wait.exec and version.exec, and in Auth.
	ContainerVars = []string{"user", "password"}
	// ProcessVars may appear in a process's command, env, init, wait and
	// version.
	ProcessVars = []string{"host", "port", "addr", "dir", "binary", "user", "password"}
	// ExternalVars may appear in an external's version.exec.
	ExternalVars = []string{"host", "port", "addr", "user", "password", "token"}
	// UserVars may appear in Users commands.
	UserVars = []string{"host", "port", "addr", "user", "password", "name", "secret", "scope"}
	// AddCredentialsVars may appear in Users.AddCredentials: UserVars and
	// the new credentials' username.
	AddCredentialsVars = append(slices.Clone(UserVars), "new_name")
	// NameVars may appear in Users.AddCredentialsUser.
	NameVars = []string{"name"}
	// ScopeVars may appear in Users.ScopeConfig.
	ScopeVars = []string{"scope"}
)

var placeholder = regexp.MustCompile(`\{\{|\}\}|\{[^{}]*\}`)

// Render replaces the placeholders of s with vars ("{{" and "}}" become
// braces). A placeholder not in vars is an error.
func Render(s string, vars map[string]string) (string, error) {
	var bad string
	out := placeholder.ReplaceAllStringFunc(s, func(m string) string {
		switch m {
		case "{{":
			return "{"
		case "}}":
			return "}"
		}
		v, ok := vars[m[1:len(m)-1]]
		if !ok && bad == "" {
			bad = m
		}
		return v
	})
	if bad != "" {
		return "", fmt.Errorf("unknown placeholder %s in %q", bad, s)
	}
	return out, nil
}

// RenderAll renders every string of ss.
func RenderAll(ss []string, vars map[string]string) ([]string, error) {
	out := make([]string, len(ss))
	for i, s := range ss {
		var err error
		if out[i], err = Render(s, vars); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RenderMap renders every value of m.
func RenderMap(m map[string]string, vars map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(m))
	for k, v := range m {
		r, err := Render(v, vars)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = r
	}
	return out, nil
}

// RenderValue renders every string in v (maps and lists at any depth).
func RenderValue(v any, vars map[string]string) (any, error) {
	switch x := v.(type) {
	case string:
		return Render(x, vars)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := RenderValue(e, vars)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := RenderValue(e, vars)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// vars returns names mapped to themselves, for checking.
func varsOf(names []string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = ""
	}
	return m
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// validator collects the first problem with its line.
type validator struct {
	d    *Definition
	root *yaml.Node
	err  *Error
}

// fail records a problem at path (dotted YAML path) unless one is recorded.
func (v *validator) fail(path, format string, args ...any) {
	if v.err != nil {
		return
	}
	v.err = &Error{File: v.d.File, Line: v.line(path), Field: path, Msg: fmt.Sprintf(format, args...)}
}

// line returns the line of path's value, or of its nearest parent found.
func (v *validator) line(path string) int {
	n := v.root
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, key := range strings.Split(path, ".") {
		if key == "" {
			continue
		}
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					next = n.Content[i+1]
					line = n.Content[i].Line
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(key); err == nil && i < len(n.Content) {
				next = n.Content[i]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

func (v *validator) strings(path string, ss []string, allowed []string) {
	vars := varsOf(allowed)
	for i, s := range ss {
		if _, err := Render(s, vars); err != nil {
			v.fail(fmt.Sprintf("%s.%d", path, i), "%v (allowed here: %s)", err, braces(allowed))
		}
	}
}

func (v *validator) stringMap(path string, m map[string]string, allowed []string) {
	vars := varsOf(allowed)
	for _, k := range sortedKeys(m) {
		if _, err := Render(m[k], vars); err != nil {
			v.fail(path+"."+k, "%v (allowed here: %s)", err, braces(allowed))
		}
	}
}

func braces(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "{" + n + "}"
	}
	return strings.Join(out, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Validate checks d (see the package doc); Load and Parse call it. Errors
// are *Error naming the field.
func (d *Definition) Validate() error { return d.validate(nil) }

func (d *Definition) validate(root *yaml.Node) error {
	v := &validator{d: d, root: root}
	switch {
	case d.Name == "":
		v.fail("name", "is required: the backend's name, e.g. postgres")
	case !nameRE.MatchString(d.Name):
		v.fail("name", "%q is not a name: lower case letters, digits and -, starting with a letter", d.Name)
	case d.Name == "memstore":
		v.fail("name", "memstore is reserved (it needs no backend)")
	}
	switch d.Go {
	case "", "redis", "nats":
	default:
		v.fail("go", "%q is not one of redis, nats (Go code only the built-in definitions use)", d.Go)
	}
	if d.Container == nil && d.Process == nil && d.External == nil && d.Go == "" {
		v.fail("", "no provider: give at least one of container, process, external")
	}
	if c := d.Container; c != nil {
		v.container(c)
	}
	if p := d.Process; p != nil {
		v.process(p)
	}
	if e := d.External; e != nil {
		if e.AddressEnv == "" {
			v.fail("external.address_env", "is required: the environment variable holding host:port")
		}
		v.version("external.version", e.Version, ExternalVars)
	}
	v.plugin(root)
	if a := d.Auth; a != nil {
		v.strings("auth.args", a.Args, ContainerVars)
		v.stringMap("auth.env", a.Env, ContainerVars)
	}
	if u := d.Users; u != nil {
		for _, c := range []struct {
			name     string
			cmd      []string
			required bool
			vars     []string
		}{
			{"add", u.Add, true, UserVars}, {"add_credentials", u.AddCredentials, false, AddCredentialsVars},
			{"revoke", u.Revoke, true, UserVars}, {"authenticate", u.Authenticate, true, UserVars},
			{"try_write", u.TryWrite, true, UserVars}, {"try_admin", u.TryAdmin, true, UserVars},
			{"suspend", u.Suspend, false, UserVars}, {"restore", u.Restore, false, UserVars},
		} {
			if c.required && len(c.cmd) == 0 {
				v.fail("users."+c.name, "is required: a command (exit 0 means it succeeded)")
			}
			v.strings("users."+c.name, c.cmd, c.vars)
		}
		if u.AddCredentialsUser != "" {
			if len(u.AddCredentials) == 0 {
				v.fail("users.add_credentials_user", "goes with users.add_credentials, which is missing")
			}
			if _, err := Render(u.AddCredentialsUser, varsOf(NameVars)); err != nil {
				v.fail("users.add_credentials_user", "%v (allowed here: %s)", err, braces(NameVars))
			}
		}
		v.stringMap("users.scope_config", u.ScopeConfig, ScopeVars)
	}
	if v.err != nil {
		return v.err
	}
	return nil
}

func (v *validator) container(c *Container) {
	switch {
	case c.Image == "" && c.Build == nil:
		v.fail("container.image", "is required (or container.build): the image to run")
	case c.Image != "" && c.Build != nil:
		v.fail("container.build", "give container.image or container.build, not both")
	}
	if b := c.Build; b != nil && b.Context == "" {
		v.fail("container.build.context", "is required: the build context folder, relative to the file")
	}
	if c.Port == "" {
		v.fail("container.port", "is required: the container port plugins connect to, e.g. 5432/tcp")
	} else if _, err := ContainerPort(c.Port); err != nil {
		v.fail("container.port", "%v", err)
	}
	v.stringMap("container.env", c.Env, ContainerVars)
	v.strings("container.entrypoint", c.Entrypoint, ContainerVars)
	v.strings("container.command", c.Command, ContainerVars)
	for _, p := range sortedKeys(c.Tmpfs) {
		if !strings.HasPrefix(p, "/") {
			v.fail("container.tmpfs."+p, "%q is not an absolute container path", p)
		}
	}
	for i, vol := range c.Volumes {
		if _, _, _, err := ParseVolume(vol); err != nil {
			v.fail(fmt.Sprintf("container.volumes.%d", i), "%v", err)
		}
	}
	v.wait("container.wait", &c.Wait, ContainerVars, true)
	v.version("container.version", c.Version, ContainerVars)
}

func (v *validator) process(p *Process) {
	if len(p.Command) == 0 || p.Command[0] == "" {
		v.fail("process.command", "is required: the server binary and its arguments")
	}
	v.strings("process.command", p.Command, ProcessVars)
	v.stringMap("process.env", p.Env, ProcessVars)
	for i, c := range p.Init {
		if len(c) == 0 {
			v.fail(fmt.Sprintf("process.init.%d", i), "is an empty command")
		}
		v.strings(fmt.Sprintf("process.init.%d", i), c, ProcessVars)
	}
	v.wait("process.wait", &p.Wait, ProcessVars, false)
	v.version("process.version", p.Version, ProcessVars)
}

func (v *validator) wait(path string, w *Wait, allowed []string, container bool) {
	if w.Log == "" && w.Port == "" && len(w.Exec) == 0 && w.HTTP == nil {
		v.fail(path, "is required: at least one of log, port, exec, http")
	}
	if w.LogOccurrences < 0 {
		v.fail(path+".log_occurrences", "must not be negative")
	}
	checkPort := func(field, port string) {
		if container {
			if _, err := ContainerPort(port); err != nil {
				v.fail(field, "%v", err)
			}
			return
		}
		if port == "{port}" {
			return
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			v.fail(field, "%q is not {port} or a port number", port)
		}
	}
	if w.Port != "" {
		checkPort(path+".port", w.Port)
	}
	v.strings(path+".exec", w.Exec, allowed)
	if h := w.HTTP; h != nil {
		if h.Port == "" {
			v.fail(path+".http.port", "is required")
		} else {
			checkPort(path+".http.port", h.Port)
		}
		if h.Status != 0 && (h.Status < 100 || h.Status > 599) {
			v.fail(path+".http.status", "%d is not an HTTP status", h.Status)
		}
		if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
			v.fail(path+".http.path", "%q does not start with /", h.Path)
		}
	}
}

func (v *validator) version(path string, ver *Version, allowed []string) {
	if ver == nil {
		return
	}
	if len(ver.Exec) == 0 {
		v.fail(path+".exec", "is required: a command whose output holds the version")
	}
	v.strings(path+".exec", ver.Exec, allowed)
	if ver.Regexp != "" {
		if _, err := regexp.Compile(ver.Regexp); err != nil {
			v.fail(path+".regexp", "%v", err)
		}
	}
}

func (v *validator) plugin(root *yaml.Node) {
	p := &v.d.Plugin
	if p.Config == nil {
		v.fail("plugin.config", "is required: the plugin config, templated from the instance (may be {})")
	}
	vars := varsOf(PluginVars)
	for _, k := range sortedKeys(p.Config) {
		if _, err := RenderValue(p.Config[k], vars); err != nil {
			v.fail("plugin.config."+k, "%v (allowed here: %s)", err, braces(PluginVars))
		}
	}
	v.stringMap("plugin.credentials", p.Credentials, PluginVars)
	for i, b := range p.BadConfigs {
		path := fmt.Sprintf("plugin.bad_configs.%d", i)
		switch {
		case b.Name == "":
			v.fail(path+".name", "is required")
		case b.Config == nil:
			v.fail(path+".config", "is required")
		case b.Field == "":
			v.fail(path+".field", "is required: the field the plugin's InvalidArgument must name")
		}
	}
}

// ContainerPort normalises a container port: "5432" → "5432/tcp".
func ContainerPort(p string) (string, error) {
	num, proto, _ := strings.Cut(p, "/")
	if proto == "" {
		proto = "tcp"
	}
	if n, err := strconv.Atoi(num); err != nil || n <= 0 || n > 65535 || (proto != "tcp" && proto != "udp") {
		return "", fmt.Errorf("%q is not a container port such as 5432/tcp", p)
	}
	return num + "/" + proto, nil
}

// ParseVolume splits "SOURCE:TARGET[:ro]".
func ParseVolume(s string) (source, target string, readOnly bool, err error) {
	parts := strings.Split(s, ":")
	if len(parts) == 3 && parts[2] == "ro" {
		readOnly = true
		parts = parts[:2]
	}
	if len(parts) != 2 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
		return "", "", false, fmt.Errorf("%q is not SOURCE:TARGET or SOURCE:TARGET:ro with an absolute TARGET", s)
	}
	return parts[0], parts[1], readOnly, nil
}

// Path resolves p relative to the definition file's folder.
func (d *Definition) Path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.Dir(), p)
}
