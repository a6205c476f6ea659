package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/prism-suite/prism/reference/internal/authmutant"
)

// Config configures an [Authorizer]. It is meant to sit in the proxy's YAML
// config (under auth:); build one in Go with [DefaultConfig] and set Issuer
// and Audience. [Config.Validate] checks it either way.
//
//	issuer: https://idp.example.com/realms/prism   # required; discovery at <issuer>/.well-known/openid-configuration
//	audience: prism-proxy                          # required; the token's aud (string or array) must contain it
//	algorithms: [RS256, ES256]                     # allow-list (default RS256, ES256); "none" is never allowed
//	clock_skew: 30s                                # leeway for exp, nbf and iat (default 30s, at most 5m)
//	max_token_bytes: 8192                          # longer tokens are rejected before parsing (default 8 KiB)
//	jwks_refetch_interval: 1m                      # least time between two JWKS fetches (unknown kid, failures)
//	jwks_max_age: 5m                               # the JWKS is refreshed in the background when older
//	http_timeout: 10s                              # bounds each discovery and JWKS request
//	cache_size: 10000                              # verified tokens kept until they expire (0: no cache)
//	max_token_lifetime: 24h                        # exp - iat and exp - now at most this (0: no limit)
//	allow_missing_subject: false                   # a token must name its subject (sub) unless true
//	grants:
//	  claim: scope                                 # scope | scp | groups | any claim name
//	  pattern: "prism:{namespace}:{access}"        # grants read straight from the claim; "" turns this off
//	  mapping:                                     # claim values (groups, roles) → namespaces
//	    orders-team:   {read: [orders], write: [orders]}
//	    analysts:      {read: [orders, events]}
//	    prism-admins:  {read: ["*"], write: ["*"]}
//
// HS256/HS384/HS512 are allowed only when listed in algorithms and a shared
// secret is configured under hmac (a secret never sits in the file itself):
//
//	algorithms: [RS256, HS256]
//	hmac: {kid: shared-1, secret_env: PRISM_JWT_SECRET}   # or secret_file: /run/secrets/jwt
type Config struct {
	// Issuer is the token issuer (the iss claim must equal it) and the base of
	// OIDC discovery. It is an https URL, or http on a loopback host
	// (127.0.0.1, ::1, localhost) for tests.
	Issuer string `yaml:"issuer"`
	// Audience is this proxy's audience: the token's aud claim, a string or
	// an array, must contain it.
	Audience string `yaml:"audience"`
	// Algorithms is the allow-list of signature algorithms (the JWS header's
	// alg, compared exactly). Known: RS256 RS384 RS512 PS256 PS384 PS512
	// ES256 ES384 ES512 EdDSA, and HS256 HS384 HS512 with HMAC.
	Algorithms []string `yaml:"algorithms"`
	// ClockSkew is the leeway for exp, nbf and iat (at most 5m).
	ClockSkew time.Duration `yaml:"clock_skew"`
	// MaxTokenBytes caps the length of a token; longer ones are rejected
	// before any parsing.
	MaxTokenBytes int `yaml:"max_token_bytes"`
	// JWKSURI, when set, is fetched instead of the discovered jwks_uri (no
	// discovery request is made).
	JWKSURI string `yaml:"jwks_uri,omitempty"`
	// JWKSRefetchInterval is the least time between two JWKS fetches that a
	// token can cause: a token whose kid is not in the key set causes a
	// refetch only when the last fetch is at least this old, so a burst of
	// random kids costs one fetch. Failed fetches are retried no sooner either.
	JWKSRefetchInterval time.Duration `yaml:"jwks_refetch_interval"`
	// JWKSMaxAge is how old the key set may get before it is refreshed in the
	// background (so a key removed by the issuer stops being accepted within
	// about this time). At least JWKSRefetchInterval.
	JWKSMaxAge time.Duration `yaml:"jwks_max_age"`
	// HTTPTimeout bounds each discovery and JWKS request.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// CacheSize is how many verified tokens are kept (by a hash of the token,
	// never the token) until they expire; 0 turns the cache off.
	CacheSize int `yaml:"cache_size"`
	// HMAC is the shared secret for HS256/HS384/HS512 (off by default).
	HMAC *HMACConfig `yaml:"hmac,omitempty"`
	// Grants says where a token's grants come from.
	Grants GrantsConfig `yaml:"grants"`
	// AllowMissingSubject accepts tokens without a sub claim (or with an
	// empty one). Off by default: a principal that names nobody cannot be
	// audited.
	AllowMissingSubject bool `yaml:"allow_missing_subject,omitempty"`
	// MaxTokenLifetime refuses a token whose exp - iat, or whose exp - now,
	// is longer (0: no limit). It bounds how long a leaked token works and
	// how long a verified one stays cached.
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
}

// HMACConfig is a shared secret for HS* tokens. The secret comes from an
// environment variable or a file (its content without a trailing newline),
// or from Secret when the config is built in Go. HS* tokens must carry KeyID
// as their kid; keys from the JWKS are never used for HS*.
type HMACConfig struct {
	// KeyID is the kid HS* tokens carry.
	KeyID string `yaml:"kid"`
	// SecretEnv names the environment variable holding the secret.
	SecretEnv string `yaml:"secret_env,omitempty"`
	// SecretFile names the file holding the secret.
	SecretFile string `yaml:"secret_file,omitempty"`
	// Secret is the secret itself, for configs built in Go (never in YAML).
	Secret []byte `yaml:"-"`
}

// GrantsConfig says which claim carries a token's grants and how its values
// map to namespaces. Read and write are separate grants: write does not
// imply read.
//
// The claim's value is a space-separated string (the OAuth scope claim) or
// an array of strings (scp, groups, roles); either form is accepted for any
// claim. Each value grants access when it matches Pattern, or when it is a
// key of Mapping, or both.
type GrantsConfig struct {
	// Claim names the claim that carries grants: "scope", "scp", "groups",
	// or any other claim name (taken literally, dots included).
	Claim string `yaml:"claim"`
	// Pattern is the form of a grant named in the claim itself, with the
	// placeholders {namespace} and {access} (read or write), each once:
	// "prism:{namespace}:{access}" makes "prism:orders:read" grant read on
	// orders. "" turns direct grants off. The wildcard "*" cannot be granted
	// this way.
	Pattern string `yaml:"pattern"`
	// Mapping maps a claim value (a group, a role, a scope) to the
	// namespaces it grants. "*" in a list means every namespace.
	Mapping map[string]NamespaceGrants `yaml:"mapping,omitempty"`
}

// NamespaceGrants lists the namespaces one claim value grants read and
// write on.
type NamespaceGrants struct {
	// Read lists namespaces the value grants read on ("*": all).
	Read []string `yaml:"read,omitempty"`
	// Write lists namespaces the value grants write on ("*": all).
	Write []string `yaml:"write,omitempty"`
}

// Defaults of [DefaultConfig] and limits [Config.Validate] enforces.
const (
	DefaultClockSkew           = 30 * time.Second
	MaxClockSkew               = 5 * time.Minute
	DefaultMaxTokenBytes       = 8 << 10
	MaxMaxTokenBytes           = 64 << 10
	DefaultJWKSRefetchInterval = time.Minute
	DefaultJWKSMaxAge          = 5 * time.Minute
	DefaultHTTPTimeout         = 10 * time.Second
	DefaultCacheSize           = 10000
	DefaultMaxTokenLifetime    = 24 * time.Hour
	DefaultGrantsClaim         = "scope"
	DefaultGrantsPattern       = "prism:{namespace}:{access}"
	// MinHMACSecretBytes is the shortest HMAC secret accepted (RFC 7518
	// §3.2 asks for at least the hash size; 32 bytes fits HS256).
	MinHMACSecretBytes = 32
)

// DefaultAlgorithms is the default allow-list.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// DefaultConfig returns a config with every default and no issuer or
// audience (both are required).
func DefaultConfig() Config {
	return Config{
		Algorithms:          slices.Clone(DefaultAlgorithms),
		ClockSkew:           DefaultClockSkew,
		MaxTokenBytes:       DefaultMaxTokenBytes,
		JWKSRefetchInterval: DefaultJWKSRefetchInterval,
		JWKSMaxAge:          DefaultJWKSMaxAge,
		HTTPTimeout:         DefaultHTTPTimeout,
		CacheSize:           DefaultCacheSize,
		MaxTokenLifetime:    DefaultMaxTokenLifetime,
		Grants:              GrantsConfig{Claim: DefaultGrantsClaim, Pattern: DefaultGrantsPattern},
	}
}

// UnmarshalYAML decodes a config on top of [DefaultConfig], so fields the
// YAML leaves out keep their defaults, and refuses unknown fields (a typo in
// an auth section must not pass silently), wherever the Config sits in a
// larger document.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return fmt.Errorf("decode auth config: %w", err)
	}
	type plain Config // without this method
	d := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode((*plain)(&d)); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decode auth config: %w", err)
	}
	*c = d
	return nil
}

// algorithms maps each known algorithm to its key family.
var algorithms = map[string]keyFamily{
	"RS256": famRSA, "RS384": famRSA, "RS512": famRSA,
	"PS256": famRSA, "PS384": famRSA, "PS512": famRSA,
	"ES256": famP256, "ES384": famP384, "ES512": famP521,
	"EdDSA": famEd25519,
	"HS256": famHMAC, "HS384": famHMAC, "HS512": famHMAC,
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks the config and returns every problem at once, one per
// line, each naming its field: "grants.mapping[analysts].read[0]: ...".
// It does not read HMAC secrets; [New] does.
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	if c.Issuer == "" {
		add("issuer", "is required")
	} else if err := checkURL(c.Issuer, false); err != nil {
		add("issuer", "%v", err)
	}
	if c.Audience == "" {
		add("audience", "is required")
	}
	if len(c.Algorithms) == 0 {
		add("algorithms", "at least one algorithm is required (default %s)", strings.Join(DefaultAlgorithms, ", "))
	}
	hmacAlg := false
	seen := map[string]bool{}
	for i, a := range c.Algorithms {
		at := fmt.Sprintf("algorithms[%d]", i)
		fam, ok := algorithms[a]
		switch {
		case strings.EqualFold(a, "none"):
			add(at, "\"none\" is never allowed: unsigned tokens prove nothing")
		case !ok:
			add(at, "%q is not one of %s", a, strings.Join(knownAlgorithms(), ", "))
		case seen[a]:
			add(at, "%q is listed twice", a)
		}
		seen[a] = true
		if fam == famHMAC {
			hmacAlg = true
		}
	}
	switch {
	case hmacAlg && c.HMAC == nil:
		add("hmac", "is required when algorithms lists HS256, HS384 or HS512")
	case !hmacAlg && c.HMAC != nil:
		add("hmac", "is set, but algorithms lists no HS256, HS384 or HS512")
	case c.HMAC != nil:
		h := c.HMAC
		if h.KeyID == "" {
			add("hmac.kid", "is required")
		}
		n := 0
		for _, set := range []bool{h.SecretEnv != "", h.SecretFile != "", len(h.Secret) > 0} {
			if set {
				n++
			}
		}
		if n != 1 {
			add("hmac", "give exactly one of secret_env and secret_file (or Secret, in Go)")
		}
		if len(h.Secret) > 0 && len(h.Secret) < MinHMACSecretBytes {
			add("hmac.secret", "must be at least %d bytes", MinHMACSecretBytes)
		}
	}
	if c.ClockSkew < 0 || c.ClockSkew > MaxClockSkew {
		add("clock_skew", "must be between 0 and %v, got %v", MaxClockSkew, c.ClockSkew)
	}
	if c.MaxTokenBytes <= 0 || c.MaxTokenBytes > MaxMaxTokenBytes {
		add("max_token_bytes", "must be between 1 and %d, got %d", MaxMaxTokenBytes, c.MaxTokenBytes)
	}
	if c.JWKSURI != "" {
		if err := checkURL(c.JWKSURI, true); err != nil {
			add("jwks_uri", "%v", err)
		}
	}
	if c.JWKSRefetchInterval <= 0 {
		add("jwks_refetch_interval", "must be positive, got %v", c.JWKSRefetchInterval)
	}
	if c.JWKSMaxAge < c.JWKSRefetchInterval {
		add("jwks_max_age", "%v is less than jwks_refetch_interval %v", c.JWKSMaxAge, c.JWKSRefetchInterval)
	}
	if c.HTTPTimeout <= 0 || c.HTTPTimeout > time.Minute {
		add("http_timeout", "must be between 0 and 1m, got %v", c.HTTPTimeout)
	}
	if c.MaxTokenLifetime < 0 {
		add("max_token_lifetime", "must not be negative (0: no limit), got %v", c.MaxTokenLifetime)
	}
	if c.CacheSize < 0 {
		add("cache_size", "must not be negative, got %d", c.CacheSize)
	}
	g := c.Grants
	if g.Claim == "" {
		add("grants.claim", "is required (scope, scp, groups or a claim name)")
	}
	if g.Pattern != "" {
		if _, err := compilePattern(g.Pattern); err != nil {
			add("grants.pattern", "%v", err)
		}
	}
	if g.Pattern == "" && len(g.Mapping) == 0 {
		add("grants", "give a pattern, a mapping or both: otherwise no token grants anything")
	}
	for _, value := range sortedKeys(g.Mapping) {
		ng := g.Mapping[value]
		at := fmt.Sprintf("grants.mapping[%s]", value)
		if value == "" {
			add(at, "an empty claim value cannot be mapped")
		}
		if len(ng.Read) == 0 && len(ng.Write) == 0 {
			add(at, "grants nothing: give read, write or both")
		}
		for _, f := range []struct {
			name string
			list []string
		}{{"read", ng.Read}, {"write", ng.Write}} {
			for i, ns := range f.list {
				if ns != "*" && !nameRE.MatchString(ns) {
					add(fmt.Sprintf("%s.%s[%d]", at, f.name, i), "%q is not a namespace name or \"*\"", ns)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// checkURL accepts an absolute https URL, or http on a loopback host; a
// query only with query.
func checkURL(s string, query bool) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	if (u.RawQuery != "" && !query) || u.Fragment != "" {
		return fmt.Errorf("%q must have no query or fragment", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q must use https (http is accepted only on a loopback host)", s)
	}
	return fmt.Errorf("%q must be an https URL", s)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func knownAlgorithms() []string {
	out := make([]string, 0, len(algorithms))
	for a := range algorithms {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// compilePattern turns a grant pattern into an anchored regexp whose
// submatches are the namespace and the access.
func compilePattern(p string) (*grantPattern, error) {
	const nsTok, accTok = "{namespace}", "{access}"
	if strings.Count(p, nsTok) != 1 || strings.Count(p, accTok) != 1 {
		return nil, fmt.Errorf("%q must contain %s and %s once each", p, nsTok, accTok)
	}
	var b strings.Builder
	b.WriteString("^")
	nsFirst := strings.Index(p, nsTok) < strings.Index(p, accTok)
	rest := p
	for rest != "" {
		i, j := strings.Index(rest, nsTok), strings.Index(rest, accTok)
		switch {
		case i < 0 && j < 0:
			b.WriteString(regexp.QuoteMeta(rest))
			rest = ""
		case i >= 0 && (j < 0 || i < j):
			b.WriteString(regexp.QuoteMeta(rest[:i]))
			b.WriteString(`([A-Za-z0-9][A-Za-z0-9._-]{0,127})`)
			rest = rest[i+len(nsTok):]
		default:
			b.WriteString(regexp.QuoteMeta(rest[:j]))
			b.WriteString(`(read|write)`)
			rest = rest[j+len(accTok):]
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("compile pattern %q: %w", p, err)
	}
	return &grantPattern{re: re, nsFirst: nsFirst}, nil
}

type grantPattern struct {
	re      *regexp.Regexp
	nsFirst bool
}

// match returns the namespace and access a claim value grants.
func (g *grantPattern) match(v string) (string, Access, bool) {
	re := g.re
	if authmutant.Compiled && authmutant.Active() == authmutant.ScopeUnanchored {
		re = regexp.MustCompile(strings.TrimSuffix(strings.TrimPrefix(re.String(), "^"), "$"))
	}
	m := re.FindStringSubmatch(v)
	if m == nil {
		return "", 0, false
	}
	ns, acc := m[1], m[2]
	if !g.nsFirst {
		ns, acc = acc, ns
	}
	a, _ := ParseAccess(acc)
	return ns, a, true
}
