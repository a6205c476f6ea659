// Package definition is the format of a backend definition file
// (backend.yaml): how the harness gets an instance of a backend for each
// provider a team supports, and how a plugin is pointed at it. This file is
// the format's one contract; docs/backend-file.md is an annotated example.
//
//	prism-accept --plugin ./bin/my-plugin --backend-file backends/postgres/backend.yaml
//
// The built-in redis and nats backends are described in this same format
// (backends/redis/backend.yaml, backends/nats/backend.yaml, embedded in the
// binaries), so every run exercises it.
//
// Decoding is strict: an unknown field, a value of the wrong type or a
// duplicate key is an error naming the file, the line and the field
// ([Load], [Parse]). [Definition.Validate] then checks what YAML cannot: a
// name, at least one provider, an image or a build for a container, a
// command for a process, known placeholders only.
//
// # Placeholders
//
// Strings marked "templated" may contain placeholders, written {name}; "{{"
// stands for a literal "{" and "}}" for a literal "}". An unknown placeholder
// is an error when the file is loaded. The set is small and fixed:
//
//	{host}      the host plugins connect to (127.0.0.1, or the external host)
//	{port}      the port plugins connect to (published on 127.0.0.1 for a container; free, chosen by the harness, for a process)
//	{addr}      {host}:{port}
//	{dir}       process: the instance's own temp dir (data, logs); removed on Close
//	{binary}    process: the resolved server binary (command[0], or the binary_env override)
//	{user}      credentials the plugin gets: the admin user in auth runs, or the external user; "" when none
//	{password}  the password that goes with {user}; "" when none
//	{token}     external: a token read from the env (see External.Env); "" when none
//	{name}      users commands: the user being made, changed or revoked
//	{secret}    users commands: that user's (new) password
//	{new_name}  users.add_credentials only: the username of the new credentials (Users.AddCredentialsUser; {name} by default)
//	{scope}     users commands and Users.ScopeConfig: the scope (namespace) a user or plugin is confined to
//
// Where a placeholder makes no sense (e.g. {dir} for a container), it is an
// error at load time. A plugin credential that renders to "" is left out.
//
// # Durations
//
// Durations are Go duration strings: "500ms", "30s", "2m".
//
// # Stability
//
// Field names are stable. A change to one is recorded at the top of
// docs/backend-file.md.
package definition

import "time"

// Definition is one backend.yaml: a backend, the providers that can give an
// instance of it, and how a plugin reaches that instance.
type Definition struct {
	// Name names the backend (its kind): lower case letters, digits and "-",
	// starting with a letter, e.g. "postgres". It is what reports record as
	// backend.kind and what --backend selects. "memstore" is reserved.
	// Required.
	Name string `yaml:"name"`

	// Description is one line for people (optional).
	Description string `yaml:"description"`

	// Container gets an instance from a Docker container
	// (testcontainers-go), provider "container".
	Container *Container `yaml:"container"`

	// Process gets an instance by running a server binary on this machine,
	// provider "process".
	Process *Process `yaml:"process"`

	// External uses an instance the user runs, located by environment
	// variables, provider "external".
	External *External `yaml:"external"`

	// Plugin says what config and credentials point the plugin at the
	// instance. Required.
	Plugin Plugin `yaml:"plugin"`

	// Auth says how the harness starts an instance that requires credentials
	// (for the auth specs, prism-accept --auth). Optional: without it the
	// harness cannot start this backend for an auth run.
	Auth *Auth `yaml:"auth"`

	// Users says how to make users confined to a scope, for the auth specs
	// (auth.backend-credentials, auth.rotation). Optional: without it those
	// specs are skipped with that reason.
	Users *Users `yaml:"users"`

	// Faults says which faults the container and process providers can
	// inject. Optional: stop/start (outage) and pause come free.
	Faults Faults `yaml:"faults"`

	// Go names Go code in the harness for what YAML cannot say: "redis" or
	// "nats" (the built-in definitions use it for their embedded providers,
	// miniredis and nats-server in-process, and for their users in auth
	// runs). A definition of your own leaves it empty.
	Go string `yaml:"go"`

	// File is the path the definition was read from ("" for one parsed from
	// bytes). It is not read from YAML.
	File string `yaml:"-"`
}

// Container is the container provider: one container whose port plugins use
// is published on a 127.0.0.1 host port the harness chooses and pins, so the
// instance keeps its address across an outage (stop, start).
type Container struct {
	// Image is the image to run, e.g. "postgres:16-alpine". Either Image or
	// Build is required. A local image is used as it is; a missing one is
	// pulled within the start timeout, unless PRISM_NO_PULL is 1 or true.
	Image string `yaml:"image"`

	// ImageEnv names an environment variable that, when set, replaces Image
	// (e.g. PRISM_POSTGRES_IMAGE), for machines with their own images.
	ImageEnv string `yaml:"image_env"`

	// Build builds the image from a Dockerfile instead of using Image.
	Build *Build `yaml:"build"`

	// Port is the container port plugins connect to: "5432/tcp" or "5432"
	// (tcp). Its host port is {port}. Required.
	Port string `yaml:"port"`

	// Env is the container's environment. Values are templated ({user},
	// {password}).
	Env map[string]string `yaml:"env"`

	// Entrypoint replaces the image's entrypoint (optional). Templated.
	Entrypoint []string `yaml:"entrypoint"`

	// Command is the container's command (arguments to the entrypoint).
	// Templated; an argument that renders to "" is kept.
	Command []string `yaml:"command"`

	// Tmpfs mounts tmpfs file systems: container path → mount options
	// (e.g. "/var/lib/postgresql/data": "rw,size=256m"; "" for defaults).
	Tmpfs map[string]string `yaml:"tmpfs"`

	// Volumes are bind mounts, "SOURCE:TARGET" or "SOURCE:TARGET:ro"; a
	// relative SOURCE is relative to the definition file's folder.
	Volumes []string `yaml:"volumes"`

	// Wait says when the server is ready. Required: at least one strategy.
	Wait Wait `yaml:"wait"`

	// Version says how to read the server's version for reports (optional:
	// "unknown" without it).
	Version *Version `yaml:"version"`
}

// Build builds a container image from a Dockerfile.
type Build struct {
	// Context is the build context folder, relative to the definition file's
	// folder. Required.
	Context string `yaml:"context"`

	// Dockerfile is the Dockerfile's path inside Context (default
	// "Dockerfile").
	Dockerfile string `yaml:"dockerfile"`

	// Args are build arguments.
	Args map[string]string `yaml:"args"`
}

// Process is the process provider: a server binary run on this machine,
// listening on 127.0.0.1:{port} (a free port the harness chooses), with its
// own temp dir {dir}. Its stdout and stderr go to {dir}/server.log. Outage is
// SIGKILL then a restart on the same port and dir; pause is SIGSTOP/SIGCONT.
type Process struct {
	// Command is the server's argv: the binary (a path, or a name looked up
	// in PATH) then its arguments. Templated ({port}, {host}, {addr}, {dir},
	// {user}, {password}). Required.
	Command []string `yaml:"command"`

	// BinaryEnv names an environment variable that, when set, replaces
	// Command[0] (e.g. PRISM_POSTGRES_SERVER).
	BinaryEnv string `yaml:"binary_env"`

	// Env is added to the server's environment. Templated.
	Env map[string]string `yaml:"env"`

	// Init are commands run once, in order, before the server first starts
	// (e.g. initdb -D {dir}/data). Each must exit 0. Templated.
	Init [][]string `yaml:"init"`

	// Wait says when the server is ready. Required: at least one strategy.
	Wait Wait `yaml:"wait"`

	// Version says how to read the server's version (optional). Its exec
	// command runs on this machine; {binary} is the resolved binary.
	Version *Version `yaml:"version"`
}

// External is the external provider: an instance the user runs. Its
// address and credentials come from environment variables; the harness
// checks that the address accepts TCP connections and never stops it.
type External struct {
	// AddressEnv names the variable holding host:port, or a URL with a host
	// and port (e.g. nats://127.0.0.1:4222). Required.
	AddressEnv string `yaml:"address_env"`

	// UserEnv, PasswordEnv and TokenEnv name the variables holding the
	// credentials the plugin gets ({user}, {password}, {token}); optional.
	UserEnv     string `yaml:"user_env"`
	PasswordEnv string `yaml:"password_env"`
	TokenEnv    string `yaml:"token_env"`

	// Version says how to read the server's version (optional). Its exec
	// command runs on this machine.
	Version *Version `yaml:"version"`
}

// Wait lists readiness strategies. Every strategy given must succeed, in
// the order log, port, exec, http, within Timeout. When they do not, the
// start fails with an error naming the file, the provider and what was
// waited for, with the last lines of the server's log, and what was started
// is removed.
type Wait struct {
	// Log waits for a line of the server's output containing this text.
	Log string `yaml:"log"`

	// LogOccurrences waits for that many such lines (default 1; postgres
	// images print "ready to accept connections" twice).
	LogOccurrences int `yaml:"log_occurrences"`

	// Port waits until a port accepts TCP connections. Container: a
	// container port ("5432/tcp"; its published host port is checked).
	// Process: "{port}" or a number.
	Port string `yaml:"port"`

	// Exec waits until this command exits 0 (run in the container, or on
	// this machine for a process). Templated.
	Exec []string `yaml:"exec"`

	// HTTP waits until an HTTP GET answers with Status.
	HTTP *HTTPWait `yaml:"http"`

	// Timeout bounds the wait (default 60s, or --timeout-backend when that
	// is shorter).
	Timeout Duration `yaml:"timeout"`
}

// HTTPWait is an HTTP readiness check.
type HTTPWait struct {
	// Port is the port to GET: a container port ("8222/tcp") for a
	// container, "{port}" or a number for a process. Required.
	Port string `yaml:"port"`

	// Path is the request path (default "/").
	Path string `yaml:"path"`

	// Status is the status code that means ready (default 200).
	Status int `yaml:"status"`
}

// Version reads the server's version, for reports.
type Version struct {
	// Exec is a command whose output holds the version (in the container,
	// or on this machine for process and external). Templated. Required.
	Exec []string `yaml:"exec"`

	// Regexp picks the version out of the output: its first group, or the
	// whole match when it has none (default: the first line of the output).
	Regexp string `yaml:"regexp"`
}

// Plugin is what the plugin gets in Initialize to reach the instance.
type Plugin struct {
	// Config is the plugin's config document. Every string in it, at any
	// depth, is templated, e.g. {address: "{addr}"} or
	// {dsn: "postgres://{user}:{password}@{addr}/prism"}. Other values are
	// passed as they are. Required (may be {} for a plugin that needs none).
	Config map[string]any `yaml:"config"`

	// Credentials are handed to the plugin apart from Config, so that they
	// can be redacted in reports. Templated; an entry that renders to "" is
	// left out (e.g. password: "{password}" when the run has none).
	Credentials map[string]string `yaml:"credentials"`

	// BadConfigs are invalid configs the lifecycle specs send; the plugin
	// must refuse each with InvalidArgument naming Field. Not templated.
	BadConfigs []BadConfig `yaml:"bad_configs"`
}

// BadConfig is an invalid plugin config and the field it gets wrong.
type BadConfig struct {
	// Name says what is wrong, e.g. "missing dsn". Required.
	Name string `yaml:"name"`
	// Config is the config sent. Required.
	Config map[string]any `yaml:"config"`
	// Field is the field the plugin's InvalidArgument must name. Required.
	Field string `yaml:"field"`
}

// Auth says how to start an instance that requires credentials: the harness
// chooses an admin user and password ({user}, {password}), adds Args and Env
// below, and hands the admin credentials to the plugin through
// Plugin.Credentials.
type Auth struct {
	// Args are appended to the container's command or the process's argv.
	// Templated.
	Args []string `yaml:"args"`

	// Env is added to the container's or process's environment. Templated.
	Env map[string]string `yaml:"env"`
}

// Users makes users confined to a scope (the data of one namespace), for the
// auth specs. Each is a command run in the container, or on this machine for
// a process, with the admin's {user} and {password}, the instance's {host},
// {port} and {addr}, and {name}, {secret}, {scope} for the user concerned.
// A command "succeeds" when it exits 0.
type Users struct {
	// Add makes user {name} with password {secret}, confined to {scope}.
	// Required.
	Add []string `yaml:"add"`

	// AddCredentials makes new credentials for user {name}, valid together
	// with its current ones, for a rotation: user {new_name} with password
	// {secret}, with the same rights as {name} (optional; rotation specs are
	// skipped without it). With the default AddCredentialsUser, {new_name}
	// is {name}: a second password of the same user. Revoking {name}'s
	// credentials afterwards must leave the new ones working.
	AddCredentials []string `yaml:"add_credentials"`

	// AddCredentialsUser is the username of the credentials AddCredentials
	// makes, templated with {name} only (optional, added after the format's
	// first version; default "{name}", the same user). A backend whose users
	// have one password each makes a new user, e.g. "{name}-next" (each
	// user is rotated at most once by the specs). Suspend and Restore of
	// {name} then run for that user as well.
	AddCredentialsUser string `yaml:"add_credentials_user"`

	// Revoke makes password {secret} of user {name} invalid. Required.
	Revoke []string `yaml:"revoke"`

	// Authenticate succeeds when the backend accepts {name} with {secret}.
	// Required.
	Authenticate []string `yaml:"authenticate"`

	// TryWrite tries, as {name} with {secret}, to write into scope {scope}
	// (one the user is not confined to); it must succeed only if the
	// backend let it. Required.
	TryWrite []string `yaml:"try_write"`

	// TryAdmin tries, as {name} with {secret}, an administrative command;
	// it must succeed only if the backend let it. Required.
	TryAdmin []string `yaml:"try_admin"`

	// Suspend switches user {name} off and drops every connection
	// authenticated as it (with any of its passwords); it must succeed only
	// once the backend refuses the user (optional; added after the format's
	// first version: the spec of credentials revoked mid-run fails with a
	// harness error without it).
	Suspend []string `yaml:"suspend"`

	// Restore switches user {name} on again, with the passwords it had
	// (optional, goes with Suspend).
	Restore []string `yaml:"restore"`

	// ScopeConfig are the plugin config fields that keep a plugin inside
	// {scope} (e.g. {schema: "{scope}"}). Templated.
	ScopeConfig map[string]string `yaml:"scope_config"`
}

// Faults says which faults the container and process providers offer. Both
// offer outage (container: stop and start; process: SIGKILL and restart) and
// pause (container: docker pause; process: SIGSTOP) unless turned off here.
type Faults struct {
	// Outage turns stop/start off when false (default true).
	Outage *bool `yaml:"outage"`

	// Pause turns pause off when false (default true).
	Pause *bool `yaml:"pause"`

	// Persistent says that data written before an outage is there after it
	// (the server writes to the container's file system or {dir}, not only
	// to memory). Default false.
	Persistent bool `yaml:"persistent"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration
