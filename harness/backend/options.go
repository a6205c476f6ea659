package backend

import (
	"errors"
	"log"
	"os"
	"time"

	"github.com/prism-suite/prism/harness/backend/definition"
)

// Environment variables read by [DefaultOptions].
const (
	EnvRedisImage    = "PRISM_REDIS_IMAGE"    // image of the redis container provider
	EnvNATSImage     = "PRISM_NATS_IMAGE"     // image of the nats container provider
	EnvRedisServer   = "PRISM_REDIS_SERVER"   // redis-server binary of the process provider
	EnvNATSServer    = "PRISM_NATS_SERVER"    // nats-server binary of the process provider
	EnvRedisAddr     = "PRISM_REDIS_ADDR"     // host:port of an external Redis
	EnvRedisUsername = "PRISM_REDIS_USERNAME" // ACL user of an external Redis
	EnvRedisPassword = "PRISM_REDIS_PASSWORD" // password of an external Redis
	EnvNATSURL       = "PRISM_NATS_URL"       // nats://host:port of an external NATS
	EnvNATSUser      = "PRISM_NATS_USER"      // user of an external NATS
	EnvNATSPassword  = "PRISM_NATS_PASSWORD"  // password of an external NATS
	EnvNATSToken     = "PRISM_NATS_TOKEN"     // token of an external NATS
	EnvNoPull        = "PRISM_NO_PULL"        // "1" or "true": never pull a missing image
)

// Defaults used by [DefaultOptions] when the environment does not say otherwise.
const (
	DefaultRedisImage   = "redis:7-alpine"
	DefaultNATSImage    = "nats:2"
	DefaultStartTimeout = 60 * time.Second
)

// Credentials are what a client presents to a backend.
//
// For Redis, Password is required; Username is an ACL user, and "" or
// "default" means Redis's default user (requirepass). Token is ignored.
// For NATS, give either Username and Password, or Token.
type Credentials struct {
	Username string
	Password string
	Token    string
}

// ExternalConfig locates backends the user runs (provider External).
type ExternalConfig struct {
	// RedisAddr is host:port of the Redis server.
	RedisAddr string
	// RedisAuth is nil when the server needs no credentials.
	RedisAuth *Credentials
	// NATSURL is the server's URL, e.g. nats://127.0.0.1:4222.
	NATSURL string
	// NATSAuth is nil when the server needs no credentials.
	NATSAuth *Credentials
}

// Options configure [Start]. Get them from [DefaultOptions] and change what you
// need; Start fills any zero field with the value DefaultOptions would give and
// never writes to the caller's value.
type Options struct {
	// Provider says how to provide the instance (default Auto).
	Provider Provider
	// RedisImage and NATSImage are the images of the container provider
	// (defaults redis:7-alpine and nats:2, or $PRISM_REDIS_IMAGE and
	// $PRISM_NATS_IMAGE). A local image is used as it is; a missing one is
	// pulled within the start timeout.
	RedisImage string
	NATSImage  string
	// RedisServerPath and NATSServerPath are the binaries of the process
	// provider: a path, or a name looked up in PATH (defaults redis-server and
	// nats-server, or $PRISM_REDIS_SERVER and $PRISM_NATS_SERVER).
	RedisServerPath string
	NATSServerPath  string
	// External locates servers the user runs (defaults from $PRISM_REDIS_ADDR,
	// $PRISM_REDIS_USERNAME, $PRISM_REDIS_PASSWORD, $PRISM_NATS_URL,
	// $PRISM_NATS_USER, $PRISM_NATS_PASSWORD, $PRISM_NATS_TOKEN).
	External ExternalConfig
	// Auth, when not nil, makes a server the harness starts require these
	// credentials (for auth specs); they are handed to the plugin by
	// [Instance.PluginConfig]. External instances use External's credentials.
	Auth *Credentials
	// NoPull forbids pulling a missing image: the container provider fails
	// and Auto falls back to embedded (default: $PRISM_NO_PULL is 1 or true).
	// Machines without a registry set it, so no pull is attempted at all.
	NoPull bool
	// StartTimeout bounds starting an instance, including an image pull, and
	// bringing it back after an outage (default 60s).
	StartTimeout time.Duration
	// Definition, when not nil, describes the backend (a backend.yaml, see
	// harness/backend/definition): Start starts an instance of it with its
	// container, process or external provider, and the kind passed to Start
	// must be its name.
	Definition *definition.Definition
	// Logf receives progress lines ("backend: starting redis container ...").
	// DefaultOptions logs to stderr; nil discards them.
	Logf func(format string, args ...any)
}

// DefaultOptions returns the options [Start] uses by default, read from the
// environment: provider Auto, images, server binaries, external addresses and
// credentials, a 60s start timeout, progress on stderr.
func DefaultOptions() Options {
	o := Options{
		Provider:        Auto,
		RedisImage:      envOr(EnvRedisImage, DefaultRedisImage),
		NATSImage:       envOr(EnvNATSImage, DefaultNATSImage),
		RedisServerPath: envOr(EnvRedisServer, "redis-server"),
		NATSServerPath:  envOr(EnvNATSServer, "nats-server"),
		NoPull:          os.Getenv(EnvNoPull) == "1" || os.Getenv(EnvNoPull) == "true",
		StartTimeout:    DefaultStartTimeout,
		Logf:            log.New(os.Stderr, "", log.LstdFlags).Printf,
	}
	o.External = ExternalConfig{
		RedisAddr: os.Getenv(EnvRedisAddr),
		RedisAuth: credentialsFromEnv(EnvRedisUsername, EnvRedisPassword, ""),
		NATSURL:   os.Getenv(EnvNATSURL),
		NATSAuth:  credentialsFromEnv(EnvNATSUser, EnvNATSPassword, EnvNATSToken),
	}
	return o
}

// WithDefaults returns a copy of o with zero fields filled in from
// [DefaultOptions] (the environment): what [Start] uses, and what a
// provider of other topologies (harness/cluster) uses too.
func (o Options) WithDefaults() Options {
	d := DefaultOptions()
	if o.Provider == "" {
		o.Provider = d.Provider
	}
	if o.RedisImage == "" {
		o.RedisImage = d.RedisImage
	}
	if o.NATSImage == "" {
		o.NATSImage = d.NATSImage
	}
	if o.RedisServerPath == "" {
		o.RedisServerPath = d.RedisServerPath
	}
	if o.NATSServerPath == "" {
		o.NATSServerPath = d.NATSServerPath
	}
	if o.External.RedisAddr == "" {
		o.External.RedisAddr = d.External.RedisAddr
	}
	if o.External.RedisAuth == nil {
		o.External.RedisAuth = d.External.RedisAuth
	}
	if o.External.NATSURL == "" {
		o.External.NATSURL = d.External.NATSURL
	}
	if o.External.NATSAuth == nil {
		o.External.NATSAuth = d.External.NATSAuth
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = d.StartTimeout
	}
	// The environment can forbid pulls; a caller cannot re-allow them.
	o.NoPull = o.NoPull || d.NoPull
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	// Never share the caller's credentials.
	o.Auth = o.Auth.clone()
	o.External.RedisAuth = o.External.RedisAuth.clone()
	o.External.NATSAuth = o.External.NATSAuth.clone()
	return o
}

// Image returns the container image of kind.
func (o Options) Image(kind Kind) string {
	if kind == NATS {
		return o.NATSImage
	}
	return o.RedisImage
}

func (c *Credentials) clone() *Credentials {
	if c == nil {
		return nil
	}
	cp := *c
	return &cp
}

// validate checks that c can be used to start a server of kind.
func (c *Credentials) validate(kind Kind) error {
	if c == nil {
		return nil
	}
	switch kind {
	case Redis:
		if c.Password == "" {
			return errors.New("redis credentials need a password")
		}
	case NATS:
		if c.Token == "" && (c.Username == "" || c.Password == "") {
			return errors.New("nats credentials need a username and password, or a token")
		}
		if c.Token != "" && c.Username != "" {
			return errors.New("nats credentials take a username and password, or a token, not both")
		}
	}
	return nil
}

// pluginCredentials returns the credentials map handed to a plugin of kind.
func (c *Credentials) pluginCredentials(kind Kind) map[string]string {
	m := map[string]string{}
	if c == nil {
		return m
	}
	switch kind {
	case Redis:
		if c.Username != "" {
			m["username"] = c.Username
		}
		m["password"] = c.Password
	case NATS:
		if c.Token != "" {
			m["token"] = c.Token
		} else {
			m["user"] = c.Username
			m["password"] = c.Password
		}
	}
	return m
}

// redisACLUser reports whether c names a Redis ACL user other than default.
func (c *Credentials) redisACLUser() bool {
	return c != nil && c.Username != "" && c.Username != "default"
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func credentialsFromEnv(userKey, passwordKey, tokenKey string) *Credentials {
	c := Credentials{Username: os.Getenv(userKey), Password: os.Getenv(passwordKey)}
	if tokenKey != "" {
		c.Token = os.Getenv(tokenKey)
	}
	if c == (Credentials{}) {
		return nil
	}
	return &c
}
