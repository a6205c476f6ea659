package definition_test

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prism-suite/prism/harness/backend/definition"
)

// docsExample returns the annotated example of docs/backend-file.md.
func docsExample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../../docs/backend-file.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Annotated example\n\n```yaml\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/backend-file.md has no annotated yaml example")
	}
	return m[1]
}

func mustParse(t *testing.T, name string, data []byte) *definition.Definition {
	t.Helper()
	d, err := definition.Parse(name, data)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return d
}

// TestDocsExample checks that the annotated example decodes to what its
// comments say, field by field.
func TestDocsExample(t *testing.T) {
	d := mustParse(t, "docs/backend-file.md", docsExample(t))
	c, p, e := d.Container, d.Process, d.External
	checks := []struct {
		field     string
		got, want any
	}{
		{"name", d.Name, "postgres"},
		{"description", d.Description, "PostgreSQL 16"},
		{"container.image", c.Image, "postgres:16-alpine"},
		{"container.image_env", c.ImageEnv, "PRISM_POSTGRES_IMAGE"},
		{"container.port", c.Port, "5432/tcp"},
		{"container.env", c.Env, map[string]string{"POSTGRES_PASSWORD": "prism", "POSTGRES_DB": "prism"}},
		{"container.command", c.Command, []string{"postgres", "-c", "fsync=off"}},
		{"container.tmpfs", c.Tmpfs, map[string]string{"/var/lib/postgresql/data": "rw"}},
		{"container.volumes", c.Volumes, []string{"./init.sql:/docker-entrypoint-initdb.d/init.sql:ro"}},
		{"container.wait.log", c.Wait.Log, "database system is ready to accept connections"},
		{"container.wait.log_occurrences", c.Wait.LogOccurrences, 2},
		{"container.wait.port", c.Wait.Port, "5432/tcp"},
		{"container.wait.exec", c.Wait.Exec, []string{"pg_isready", "-U", "postgres"}},
		{"container.wait.timeout", c.Wait.Timeout.Std(), 60 * time.Second},
		{"container.version.exec", c.Version.Exec, []string{"postgres", "--version"}},
		{"container.version.regexp", c.Version.Regexp, `(\d+\.\d+)`},
		{"process.command[0]", p.Command[0], "postgres"},
		{"process.binary_env", p.BinaryEnv, "PRISM_POSTGRES_SERVER"},
		{"process.env", p.Env, map[string]string{"LC_ALL": "C"}},
		{"process.init", p.Init, [][]string{{"initdb", "-D", "{dir}/data", "-U", "postgres", "--auth=trust"}}},
		{"process.wait.port", p.Wait.Port, "{port}"},
		{"process.wait.timeout", p.Wait.Timeout.Std(), 30 * time.Second},
		{"process.version.exec", p.Version.Exec, []string{"{binary}", "--version"}},
		{"external.address_env", e.AddressEnv, "PRISM_POSTGRES_ADDR"},
		{"external.user_env", e.UserEnv, "PRISM_POSTGRES_USER"},
		{"external.password_env", e.PasswordEnv, "PRISM_POSTGRES_PASSWORD"},
		{"plugin.config", d.Plugin.Config, map[string]any{"dsn": "postgres://postgres@{addr}/prism?sslmode=disable", "pool_size": 4}},
		{"plugin.credentials", d.Plugin.Credentials, map[string]string{"user": "{user}", "password": "{password}"}},
		{"plugin.bad_configs", d.Plugin.BadConfigs, []definition.BadConfig{{Name: "missing dsn", Config: map[string]any{}, Field: "dsn"}}},
		{"auth.env", d.Auth.Env, map[string]string{"POSTGRES_USER": "{user}", "POSTGRES_PASSWORD": "{password}"}},
		{"auth.args", d.Auth.Args, []string{}},
		{"users.add[0]", d.Users.Add[0], "psql"},
		{"users.add_credentials", d.Users.AddCredentials, []string{}},
		{"users.revoke[0]", d.Users.Revoke[0], "psql"},
		{"users.authenticate[0]", d.Users.Authenticate[0], "sh"},
		{"users.try_write[0]", d.Users.TryWrite[0], "sh"},
		{"users.try_admin[0]", d.Users.TryAdmin[0], "sh"},
		{"users.scope_config", d.Users.ScopeConfig, map[string]string{"schema": "{scope}"}},
		{"faults.outage", *d.Faults.Outage, true},
		{"faults.pause", *d.Faults.Pause, true},
		{"faults.persistent", d.Faults.Persistent, true},
		{"file", d.File, "docs/backend-file.md"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.field, c.got, c.want)
		}
	}
}

// TestBuildVariant checks the fields the docs example leaves out.
func TestBuildVariant(t *testing.T) {
	d, err := definition.Load("testdata/build.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := d.Container.Build
	checks := []struct {
		field     string
		got, want any
	}{
		{"go", d.Go, "redis"},
		{"container.build.context", b.Context, "./image"},
		{"container.build.dockerfile", b.Dockerfile, "Dockerfile.test"},
		{"container.build.args", b.Args, map[string]string{"VERSION": "1"}},
		{"container.entrypoint", d.Container.Entrypoint, []string{"/server"}},
		{"container.wait.http", *d.Container.Wait.HTTP, definition.HTTPWait{Port: "8080/tcp", Path: "/healthz", Status: 204}},
		{"process.wait.http.port", d.Process.Wait.HTTP.Port, "{port}"},
		{"external.token_env", d.External.TokenEnv, "BUILT_TOKEN"},
		{"users.add_credentials", d.Users.AddCredentials, []string{"ctl", "add-credentials", "{name}", "{new_name}", "{secret}"}},
		{"users.add_credentials_user", d.Users.AddCredentialsUser, "{name}-next"},
		{"users.suspend", d.Users.Suspend, []string{"ctl", "off", "{name}"}},
		{"users.restore", d.Users.Restore, []string{"ctl", "on", "{name}"}},
		{"external.version.exec", d.External.Version.Exec, []string{"built-cli", "version", "{addr}"}},
		{"Path", d.Path(b.Context), "testdata/image"},
		{"Dir", d.Dir(), "testdata"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.field, c.got, c.want)
		}
	}
}

// TestEveryFieldIsDocumented walks the format's types: every field must be
// set by the docs example or testdata/build.yaml, so a new field cannot go
// undocumented or untested.
func TestEveryFieldIsDocumented(t *testing.T) {
	docs := mustParse(t, "docs", docsExample(t))
	build, err := definition.Load("testdata/build.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var walk func(path string, a, b reflect.Value)
	walk = func(path string, a, b reflect.Value) {
		if a.Kind() == reflect.Pointer {
			if a.IsNil() && b.IsNil() {
				t.Errorf("%s is set by neither the docs example nor testdata/build.yaml", path)
				return
			}
			if a.IsNil() {
				a = reflect.New(a.Type().Elem()).Elem()
			} else {
				a = a.Elem()
			}
			if b.IsNil() {
				b = reflect.New(b.Type().Elem()).Elem()
			} else {
				b = b.Elem()
			}
		}
		if a.Kind() != reflect.Struct {
			if a.IsZero() && b.IsZero() && !strings.HasSuffix(path, "persistent") {
				t.Errorf("%s is set by neither the docs example nor testdata/build.yaml", path)
			}
			return
		}
		for i := range a.NumField() {
			f := a.Type().Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "-" {
				continue
			}
			walk(path+"."+tag, a.Field(i), b.Field(i))
		}
	}
	walk("", reflect.ValueOf(docs).Elem(), reflect.ValueOf(build).Elem())
}

func TestBuiltinDefinitions(t *testing.T) {
	for _, name := range []string{"redis", "nats"} {
		d, err := definition.Load("../../../backends/" + name + "/backend.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if d.Name != name || d.Go != name || d.Container == nil || d.Process == nil || d.External == nil || d.Auth == nil {
			t.Errorf("%s: got %+v, want name and go %s and every provider and auth", name, d, name)
		}
		if !d.Faults.Persistent || !definition.Bool(d.Faults.Outage, false) || !definition.Bool(d.Faults.Pause, false) {
			t.Errorf("%s: faults %+v, want outage, pause and persistent", name, d.Faults)
		}
	}
}

const minimal = `name: x
container:
  image: img
  port: 80
  wait: {port: 80/tcp}
plugin: {config: {}}
`

// TestErrors checks that every kind of mistake is an error naming the
// file, the line and the field.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		line       int
		field, msg string
	}{
		{"unknown top-level field", "name: x\nnmae: y\n", 2, "nmae", `unknown field "nmae"`},
		{"unknown nested field", "name: x\ncontainer:\n  imagee: y\n", 3, "container.imagee", `unknown field "imagee"`},
		{"compose is not supported", minimal + "compose: {file: c.yaml}\n", 7, "compose", "unknown field"},
		{"wrong type", "name: x\ncontainer:\n  command: 5\n", 3, "", "cannot unmarshal"},
		{"duplicate key", "name: x\nname: y\n", 2, "", `"name" already defined`},
		{"bad duration", strings.Replace(minimal, "{port: 80/tcp}", "{port: 80/tcp, timeout: soon}", 1), 5, "", "not a duration"},
		{"two documents", minimal + "---\nname: y\n", 7, "", "more than one YAML document"},
		{"empty file", "", 0, "", "empty"},
		{"missing name", strings.Replace(minimal, "name: x\n", "", 1), 1, "name", "is required"},
		{"bad name", strings.Replace(minimal, "name: x", "name: My_DB", 1), 1, "name", "is not a name"},
		{"memstore reserved", strings.Replace(minimal, "name: x", "name: memstore", 1), 1, "name", "reserved"},
		{"unknown go", minimal + "go: mysql\n", 7, "go", "not one of redis, nats"},
		{"no provider", "name: x\nplugin: {config: {}}\n", 1, "", "no provider"},
		{"missing image", strings.Replace(minimal, "  image: img\n", "", 1), 2, "container.image", "is required"},
		{"image and build", strings.Replace(minimal, "  image: img\n", "  image: img\n  build: {context: .}\n", 1), 4, "container.build", "not both"},
		{"build without context", strings.Replace(minimal, "  image: img\n", "  build: {dockerfile: D}\n", 1), 3, "container.build.context", "is required"},
		{"missing port", strings.Replace(minimal, "  port: 80\n", "", 1), 2, "container.port", "is required"},
		{"bad port", strings.Replace(minimal, "port: 80\n", "port: http\n", 1), 4, "container.port", "not a container port"},
		{"missing wait", strings.Replace(minimal, "  wait: {port: 80/tcp}\n", "", 1), 2, "container.wait", "at least one of log, port, exec, http"},
		{"negative log occurrences", strings.Replace(minimal, "{port: 80/tcp}", "{log: x, log_occurrences: -1}", 1), 5, "container.wait.log_occurrences", "negative"},
		{"bad wait port", strings.Replace(minimal, "{port: 80/tcp}", "{port: eighty}", 1), 5, "container.wait.port", "not a container port"},
		{"http without port", strings.Replace(minimal, "{port: 80/tcp}", "{http: {path: /}}", 1), 5, "container.wait.http.port", "is required"},
		{"bad http status", strings.Replace(minimal, "{port: 80/tcp}", "{http: {port: 80, status: 999}}", 1), 5, "container.wait.http.status", "not an HTTP status"},
		{"bad http path", strings.Replace(minimal, "{port: 80/tcp}", "{http: {port: 80, path: healthz}}", 1), 5, "container.wait.http.path", "does not start with /"},
		{"relative tmpfs", strings.Replace(minimal, "  port: 80\n", "  port: 80\n  tmpfs: {data: ''}\n", 1), 5, "container.tmpfs.data", "absolute"},
		{"bad volume", strings.Replace(minimal, "  port: 80\n", "  port: 80\n  volumes: [data]\n", 1), 5, "container.volumes.0", "SOURCE:TARGET"},
		{"placeholder not allowed in a container", strings.Replace(minimal, "  port: 80\n", "  port: 80\n  command: [--dir, '{dir}']\n", 1), 5, "container.command.1", "unknown placeholder {dir}"},
		{"unknown placeholder in env", strings.Replace(minimal, "  port: 80\n", "  port: 80\n  env: {A: '{pasword}'}\n", 1), 5, "container.env.A", "unknown placeholder {pasword}"},
		{"version without exec", strings.Replace(minimal, "  port: 80\n", "  port: 80\n  version: {regexp: x}\n", 1), 5, "container.version.exec", "is required"},
		{"bad version regexp", strings.Replace(minimal, "  port: 80\n", "  port: 80\n  version: {exec: [v], regexp: '('}\n", 1), 5, "container.version.regexp", "missing closing"},
		{"process without command", "name: x\nprocess:\n  wait: {port: '{port}'}\nplugin: {config: {}}\n", 2, "process.command", "is required"},
		{"process bad wait port", "name: x\nprocess:\n  command: [s]\n  wait: {port: 5432/tcp}\nplugin: {config: {}}\n", 4, "process.wait.port", "not {port} or a port number"},
		{"process empty init", "name: x\nprocess:\n  command: [s]\n  init: [[]]\n  wait: {port: '{port}'}\nplugin: {config: {}}\n", 4, "process.init.0", "empty command"},
		{"process unknown placeholder", "name: x\nprocess:\n  command: [s, '{prot}']\n  wait: {port: '{port}'}\nplugin: {config: {}}\n", 3, "process.command.1", "unknown placeholder {prot}"},
		{"external without address", "name: x\nexternal: {user_env: U}\nplugin: {config: {}}\n", 2, "external.address_env", "is required"},
		{"missing plugin config", strings.Replace(minimal, "plugin: {config: {}}\n", "", 1), 1, "plugin.config", "is required"},
		{"nested placeholder in plugin config", strings.Replace(minimal, "{config: {}}", "{config: {tls: {ca: '{dir}/ca.pem'}}}", 1), 6, "plugin.config.tls", "unknown placeholder {dir}"},
		{"bad credentials placeholder", strings.Replace(minimal, "{config: {}}", "{config: {}, credentials: {p: '{secret}'}}", 1), 6, "plugin.credentials.p", "unknown placeholder {secret}"},
		{"bad config without field", strings.Replace(minimal, "{config: {}}", "{config: {}, bad_configs: [{name: n, config: {}}]}", 1), 6, "plugin.bad_configs.0.field", "is required"},
		{"bad config without name", strings.Replace(minimal, "{config: {}}", "{config: {}, bad_configs: [{config: {}, field: f}]}", 1), 6, "plugin.bad_configs.0.name", "is required"},
		{"auth placeholder", minimal + "auth: {args: ['{scope}']}\n", 7, "auth.args.0", "unknown placeholder {scope}"},
		{"users without add", minimal + "users: {revoke: [r], authenticate: [a], try_write: [w], try_admin: [x]}\n", 7, "users.add", "is required"},
		{"users placeholder", minimal + "users: {add: ['{nam}'], revoke: [r], authenticate: [a], try_write: [w], try_admin: [x]}\n", 7, "users.add.0", "unknown placeholder {nam}"},
		{"new_name outside add_credentials", minimal + "users: {add: [a], revoke: ['{new_name}'], authenticate: [a], try_write: [w], try_admin: [x]}\n", 7, "users.revoke.0", "unknown placeholder {new_name}"},
		{"add_credentials_user placeholder", minimal + "users: {add: [a], add_credentials: ['{new_name}'], add_credentials_user: '{scope}-next', revoke: [r], authenticate: [a], try_write: [w], try_admin: [x]}\n", 7, "users.add_credentials_user", "unknown placeholder {scope}"},
		{"add_credentials_user without add_credentials", minimal + "users: {add: [a], add_credentials_user: '{name}-next', revoke: [r], authenticate: [a], try_write: [w], try_admin: [x]}\n", 7, "users.add_credentials_user", "goes with users.add_credentials"},
		{"scope config placeholder", minimal + "users: {add: [a], revoke: [r], authenticate: [a], try_write: [w], try_admin: [x], scope_config: {s: '{name}'}}\n", 7, "users.scope_config.s", "unknown placeholder {name}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := definition.Parse("my/backend.yaml", []byte(tc.yaml))
			var de *definition.Error
			if err == nil {
				t.Fatal("got no error")
			}
			if !errorsAs(err, &de) {
				t.Fatalf("got %T %v, want a *definition.Error", err, err)
			}
			if de.File != "my/backend.yaml" || de.Line != tc.line || (tc.field != "" && de.Field != tc.field) || !strings.Contains(de.Msg, tc.msg) {
				t.Errorf("got %q (line %d, field %q), want line %d, field %q, a message with %q", err, de.Line, de.Field, tc.line, tc.field, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "my/backend.yaml") {
				t.Errorf("error %q does not start with the file", err)
			}
		})
	}
}

func errorsAs(err error, target **definition.Error) bool {
	e, ok := err.(*definition.Error)
	*target = e
	return ok
}

func TestRender(t *testing.T) {
	vars := map[string]string{"host": "127.0.0.1", "port": "6379", "addr": "127.0.0.1:6379", "user": ""}
	for _, tc := range []struct{ in, want, err string }{
		{"{addr}", "127.0.0.1:6379", ""},
		{"redis://{host}:{port}/0", "redis://127.0.0.1:6379/0", ""},
		{"{{literal}} {user}", "{literal} ", ""},
		{"{nope}", "", "unknown placeholder {nope}"},
		{"no placeholders", "no placeholders", ""},
	} {
		got, err := definition.Render(tc.in, vars)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Render(%q): got %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Render(%q): got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	v, err := definition.RenderValue(map[string]any{"a": []any{"{port}", 3}, "b": map[string]any{"c": "{host}"}}, vars)
	want := map[string]any{"a": []any{"6379", 3}, "b": map[string]any{"c": "127.0.0.1"}}
	if err != nil || !reflect.DeepEqual(v, want) {
		t.Errorf("RenderValue: got %v, %v; want %v", v, err, want)
	}
}
