package auth_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/prism-suite/prism/harness/oidc"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/auth"
)

type check struct {
	ns     string
	access auth.Access
	ok     bool
}

func TestGrants(t *testing.T) {
	mapping := func(c *auth.Config) {
		c.Grants.Mapping = map[string]auth.NamespaceGrants{
			"orders-team": {Read: []string{"orders"}, Write: []string{"orders"}},
			"analysts":    {Read: []string{"orders", "events"}},
			"admins":      {Read: []string{"*"}, Write: []string{"*"}},
		}
	}
	cases := []struct {
		name   string
		cfg    func(*auth.Config)
		claims func(e *env) oidc.Claims
		checks []check
	}{
		{name: "read-only scope cannot write",
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a", "prism:orders:read") },
			checks: []check{{"orders", auth.Read, true}, {"orders", auth.Write, false}}},
		{name: "write does not imply read",
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a", "prism:orders:write") },
			checks: []check{{"orders", auth.Write, true}, {"orders", auth.Read, false}}},
		{name: "a token for A cannot touch B",
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a", "prism:a:read", "prism:a:write") },
			checks: []check{{"a", auth.Read, true}, {"a", auth.Write, true}, {"b", auth.Read, false}, {"b", auth.Write, false}}},
		{name: "no grant claim grants nothing",
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a") },
			checks: []check{{"orders", auth.Read, false}}},
		{name: "a wildcard in a scope is not a wildcard",
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a", "prism:*:write", "prism:.*:read") },
			checks: []check{{"orders", auth.Write, false}, {"*", auth.Write, false}, {"orders", auth.Read, false}}},
		{name: "near misses grant nothing",
			claims: func(e *env) oidc.Claims {
				return e.iss.Claims("a", "prism:orders:Read", "prism:orders:admin", "xprism:orders:read", "prism:orders:read:x", "PRISM:orders:write")
			},
			checks: []check{{"orders", auth.Read, false}, {"orders", auth.Write, false}}},
		{name: "scp array claim", cfg: func(c *auth.Config) { c.Grants.Claim = "scp" },
			claims: func(e *env) oidc.Claims {
				return e.iss.Claims("a").With("scp", []string{"prism:orders:read", "openid"}).With("scope", "prism:orders:write")
			},
			checks: []check{{"orders", auth.Read, true}, {"orders", auth.Write, false}}},
		{name: "scp as a space-separated string", cfg: func(c *auth.Config) { c.Grants.Claim = "scp" },
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a").With("scp", "openid prism:orders:write") },
			checks: []check{{"orders", auth.Write, true}}},
		{name: "groups through the mapping table", cfg: func(c *auth.Config) { c.Grants.Claim = "groups"; mapping(c) },
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a").With("groups", []string{"analysts"}) },
			checks: []check{{"orders", auth.Read, true}, {"events", auth.Read, true}, {"orders", auth.Write, false}, {"billing", auth.Read, false}}},
		{name: "mapping wildcard", cfg: func(c *auth.Config) { c.Grants.Claim = "groups"; mapping(c) },
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a").With("groups", []string{"admins"}) },
			checks: []check{{"anything", auth.Read, true}, {"anything", auth.Write, true}}},
		{name: "groups with non-string members", cfg: func(c *auth.Config) { c.Grants.Claim = "groups"; mapping(c) },
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a").With("groups", []any{1, true, "orders-team"}) },
			checks: []check{{"orders", auth.Write, true}}},
		{name: "claim of another type grants nothing", cfg: func(c *auth.Config) { c.Grants.Claim = "groups"; mapping(c) },
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a").With("groups", map[string]any{"admins": true}) },
			checks: []check{{"orders", auth.Read, false}}},
		{name: "dedicated claim with a URL name and a custom pattern",
			cfg: func(c *auth.Config) {
				c.Grants.Claim = "https://prism.example/grants"
				c.Grants.Pattern = "{access}@{namespace}"
			},
			claims: func(e *env) oidc.Claims {
				return e.iss.Claims("a").With("https://prism.example/grants", []string{"write@team.orders", "read@events"})
			},
			checks: []check{{"team.orders", auth.Write, true}, {"team.orders", auth.Read, false}, {"events", auth.Read, true}}},
		{name: "pattern and mapping together", cfg: mapping,
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a", "prism:billing:read", "orders-team") },
			checks: []check{{"billing", auth.Read, true}, {"orders", auth.Write, true}}},
		{name: "pattern off: only the mapping grants", cfg: func(c *auth.Config) { c.Grants.Pattern = ""; mapping(c) },
			claims: func(e *env) oidc.Claims { return e.iss.Claims("a", "prism:billing:read", "analysts") },
			checks: []check{{"billing", auth.Read, false}, {"events", auth.Read, true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, tc.cfg)
			tok := e.iss.MustMint(tc.claims(e))
			for _, c := range tc.checks {
				_, err := e.a.Authorize(ctx(t), tok, c.ns, c.access)
				if c.ok {
					if err != nil {
						t.Fatalf("%s on %q: %v, want allowed", c.access, c.ns, err)
					}
					continue
				}
				wantCode(t, err, codes.PermissionDenied)
				if !errors.Is(err, auth.ErrPermissionDenied) {
					t.Fatalf("got %v, want ErrPermissionDenied", err)
				}
				msg := status.Convert(err).Message()
				if !strings.Contains(msg, `"`+c.ns+`"`) || !strings.Contains(msg, c.access.String()) {
					t.Fatalf("message %q does not name namespace %q and access %s", msg, c.ns, c.access)
				}
			}
		})
	}
}

func TestAuthorizeInvalidTokenIsUnauthenticated(t *testing.T) {
	e := setup(t, nil)
	tok := e.iss.MustMint(e.iss.Claims("a", "prism:orders:write").With("exp", nil))
	_, err := e.a.Authorize(ctx(t), tok, "orders", auth.Write)
	wantUnauthenticated(t, err)
}

func TestMethodAccess(t *testing.T) {
	want := map[string]auth.Access{
		"/prism.keyvalue.v1.KeyValue/Get": auth.Read, "/prism.keyvalue.v1.KeyValue/Exists": auth.Read,
		"/prism.keyvalue.v1.KeyValue/GetTTL": auth.Read, "/prism.keyvalue.v1.KeyValue/Scan": auth.Read,
		"/prism.keyvalue.v1.KeyValue/Count": auth.Read, "/prism.keyvalue.v1.KeyValue/BatchGet": auth.Read,
		"/prism.keyvalue.v1.KeyValue/Set": auth.Write, "/prism.keyvalue.v1.KeyValue/Delete": auth.Write,
		"/prism.keyvalue.v1.KeyValue/Expire": auth.Write, "/prism.keyvalue.v1.KeyValue/Persist": auth.Write,
		"/prism.keyvalue.v1.KeyValue/BatchSet": auth.Write, "/prism.keyvalue.v1.KeyValue/BatchDelete": auth.Write,
		"/prism.pubsub.v1.PubSub/Subscribe": auth.Read, "/prism.pubsub.v1.PubSub/Publish": auth.Write,
		"/prism.pubsub.v1.PubSub/PublishBatch": auth.Write, "/prism.pubsub.v1.PubSub/Ack": auth.Write,
		"/prism.pubsub.v1.PubSub/DeleteDurable": auth.Write,
		"/prism.registry.v1.Registry/Enumerate": auth.Read, "/prism.registry.v1.Registry/Receive": auth.Read,
		"/prism.registry.v1.Registry/Register": auth.Write, "/prism.registry.v1.Registry/Unregister": auth.Write,
		"/prism.registry.v1.Registry/Multicast": auth.Write,
	}
	for m, a := range want {
		if got, ok := auth.MethodAccess(m); !ok || got != a {
			t.Errorf("MethodAccess(%s) = %v, %v; want %v, true", m, got, ok, a)
		}
	}
	for _, m := range []string{"/prism.keyvalue.v1.KeyValue/Frobnicate", "/prism.lifecycle.v1.Lifecycle/Stop", "/x/Get", "Get", ""} {
		if _, ok := auth.MethodAccess(m); ok {
			t.Errorf("MethodAccess(%q) known, want unknown", m)
		}
	}
	// Every method of the data services' protos is in the table, so a
	// method added to a proto cannot slip through as "unknown".
	for _, fd := range []protoreflect.FileDescriptor{keyvaluev1.File_prism_keyvalue_v1_keyvalue_proto,
		pubsubv1.File_prism_pubsub_v1_pubsub_proto, registryv1.File_prism_registry_v1_registry_proto} {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				full := "/" + string(sd.FullName()) + "/" + string(sd.Methods().Get(j).Name())
				if _, ok := auth.MethodAccess(full); !ok {
					t.Errorf("%s is in the proto but not in the access table", full)
				}
			}
		}
	}
}

// exampleYAML is the example of the Config doc comment, as the proxy's
// auth: section would hold it.
const exampleYAML = `
issuer: https://idp.example.com/realms/prism
audience: prism-proxy
algorithms: [RS256, ES256]
clock_skew: 30s
max_token_bytes: 8192
jwks_refetch_interval: 1m
jwks_max_age: 5m
http_timeout: 10s
cache_size: 10000
grants:
  claim: groups
  pattern: "prism:{namespace}:{access}"
  mapping:
    orders-team:   {read: [orders], write: [orders]}
    analysts:      {read: [orders, events]}
    prism-admins:  {read: ["*"], write: ["*"]}
`

func decodeYAML(t *testing.T, s string) auth.Config {
	t.Helper()
	c := auth.DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(s)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decode YAML: %v", err)
	}
	return c
}

func TestConfigYAML(t *testing.T) {
	c := decodeYAML(t, exampleYAML)
	if err := c.Validate(); err != nil {
		t.Fatalf("the documented example is invalid: %v", err)
	}
	if c.ClockSkew != 30*time.Second || c.JWKSRefetchInterval != time.Minute || c.Grants.Claim != "groups" ||
		len(c.Grants.Mapping["analysts"].Read) != 2 || c.Grants.Mapping["prism-admins"].Write[0] != "*" {
		t.Fatalf("decoded %+v", c)
	}
	minimal := decodeYAML(t, "issuer: https://idp.example.com\naudience: prism\n")
	if err := minimal.Validate(); err != nil {
		t.Fatalf("issuer and audience alone: %v", err)
	}
	if strings.Join(minimal.Algorithms, ",") != "RS256,ES256" || minimal.MaxTokenBytes != 8192 ||
		minimal.Grants.Pattern != "prism:{namespace}:{access}" || minimal.Grants.Claim != "scope" {
		t.Fatalf("defaults not kept: %+v", minimal)
	}
	// Nested in a larger document (the proxy's config), decoded by a plain
	// decoder: defaults still apply, nested ones included, and typos fail.
	var doc struct {
		Listen string       `yaml:"listen"`
		Auth   *auth.Config `yaml:"auth"`
	}
	if err := yaml.Unmarshal([]byte("listen: x\nauth:\n  issuer: https://idp.example.com\n  audience: prism\n  grants: {claim: groups}\n"), &doc); err != nil {
		t.Fatalf("nested: %v", err)
	}
	if doc.Auth == nil || doc.Auth.ClockSkew != auth.DefaultClockSkew || doc.Auth.Grants.Claim != "groups" ||
		doc.Auth.Grants.Pattern != auth.DefaultGrantsPattern || doc.Auth.Validate() != nil {
		t.Fatalf("nested: defaults not applied: %+v", doc.Auth)
	}
	for _, typo := range []string{"auth:\n  issuer: https://idp.example.com\n  audiance: prism\n",
		"auth:\n  grants: {claims: groups}\n"} {
		if err := yaml.Unmarshal([]byte(typo), &doc); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("%q: got %v, want an unknown-field error", typo, err)
		}
	}
	hs := decodeYAML(t, "issuer: https://idp.example.com\naudience: prism\nalgorithms: [RS256, HS256]\nhmac: {kid: shared-1, secret_env: PRISM_TEST_JWT_SECRET}\n")
	if err := hs.Validate(); err != nil {
		t.Fatalf("HS256 with hmac: %v", err)
	}
	t.Setenv("PRISM_TEST_JWT_SECRET", string(hmacSecret))
	if a, err := auth.New(hs); err != nil {
		t.Fatalf("New with secret_env: %v", err)
	} else {
		a.Close()
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() auth.Config {
		c := auth.DefaultConfig()
		c.Issuer, c.Audience = "https://idp.example.com", "prism"
		return c
	}
	cases := []struct {
		name string
		mut  func(*auth.Config)
		want string
	}{
		{"issuer missing", func(c *auth.Config) { c.Issuer = "" }, "issuer: is required"},
		{"issuer relative", func(c *auth.Config) { c.Issuer = "idp.example.com" }, "issuer: "},
		{"issuer plain http", func(c *auth.Config) { c.Issuer = "http://idp.example.com" }, "issuer: \"http://idp.example.com\" must use https"},
		{"issuer with query", func(c *auth.Config) { c.Issuer = "https://idp.example.com/?a=b" }, "issuer: "},
		{"audience missing", func(c *auth.Config) { c.Audience = "" }, "audience: is required"},
		{"alg none", func(c *auth.Config) { c.Algorithms = []string{"RS256", "none"} }, "algorithms[1]: \"none\" is never allowed"},
		{"alg NONE", func(c *auth.Config) { c.Algorithms = []string{"NONE"} }, "algorithms[0]: \"none\" is never allowed"},
		{"alg unknown", func(c *auth.Config) { c.Algorithms = []string{"RS257"} }, "algorithms[0]: \"RS257\" is not one of"},
		{"alg lower case", func(c *auth.Config) { c.Algorithms = []string{"rs256"} }, "algorithms[0]: \"rs256\" is not one of"},
		{"alg twice", func(c *auth.Config) { c.Algorithms = []string{"RS256", "RS256"} }, "algorithms[1]: \"RS256\" is listed twice"},
		{"no algs", func(c *auth.Config) { c.Algorithms = nil }, "algorithms: at least one"},
		{"HS256 without hmac", func(c *auth.Config) { c.Algorithms = []string{"HS256"} }, "hmac: is required"},
		{"hmac without HS", func(c *auth.Config) { c.HMAC = &auth.HMACConfig{KeyID: "k", SecretEnv: "X"} }, "hmac: is set, but algorithms"},
		{"hmac without kid", func(c *auth.Config) {
			c.Algorithms = []string{"HS256"}
			c.HMAC = &auth.HMACConfig{SecretEnv: "X"}
		}, "hmac.kid: is required"},
		{"hmac with two secrets", func(c *auth.Config) {
			c.Algorithms = []string{"HS256"}
			c.HMAC = &auth.HMACConfig{KeyID: "k", SecretEnv: "X", SecretFile: "/f"}
		}, "hmac: give exactly one"},
		{"hmac secret short", func(c *auth.Config) {
			c.Algorithms = []string{"HS256"}
			c.HMAC = &auth.HMACConfig{KeyID: "k", Secret: []byte("short")}
		}, "hmac.secret: must be at least 32 bytes"},
		{"skew negative", func(c *auth.Config) { c.ClockSkew = -time.Second }, "clock_skew: must be between 0 and 5m0s"},
		{"skew too large", func(c *auth.Config) { c.ClockSkew = 6 * time.Minute }, "clock_skew: must be between 0 and 5m0s"},
		{"max token zero", func(c *auth.Config) { c.MaxTokenBytes = 0 }, "max_token_bytes: must be between 1 and"},
		{"max token huge", func(c *auth.Config) { c.MaxTokenBytes = 1 << 20 }, "max_token_bytes: must be between 1 and"},
		{"refetch zero", func(c *auth.Config) { c.JWKSRefetchInterval = 0 }, "jwks_refetch_interval: must be positive"},
		{"max age under refetch", func(c *auth.Config) { c.JWKSMaxAge = time.Second }, "jwks_max_age: 1s is less than jwks_refetch_interval"},
		{"jwks uri http", func(c *auth.Config) { c.JWKSURI = "http://keys.example/jwks" }, "jwks_uri: "},
		{"http timeout zero", func(c *auth.Config) { c.HTTPTimeout = 0 }, "http_timeout: "},
		{"cache negative", func(c *auth.Config) { c.CacheSize = -1 }, "cache_size: must not be negative"},
		{"claim empty", func(c *auth.Config) { c.Grants.Claim = "" }, "grants.claim: is required"},
		{"pattern without access", func(c *auth.Config) { c.Grants.Pattern = "prism:{namespace}" }, "grants.pattern: "},
		{"pattern with namespace twice", func(c *auth.Config) { c.Grants.Pattern = "{namespace}:{namespace}:{access}" }, "grants.pattern: "},
		{"no pattern, no mapping", func(c *auth.Config) { c.Grants.Pattern = "" }, "grants: give a pattern, a mapping or both"},
		{"mapping bad namespace", func(c *auth.Config) {
			c.Grants.Mapping = map[string]auth.NamespaceGrants{"g": {Read: []string{"ok", "../x"}}}
		}, "grants.mapping[g].read[1]: \"../x\" is not a namespace name"},
		{"mapping grants nothing", func(c *auth.Config) {
			c.Grants.Mapping = map[string]auth.NamespaceGrants{"g": {}}
		}, "grants.mapping[g]: grants nothing"},
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mut(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
			if _, err := auth.New(c); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
	t.Run("loopback http issuer is allowed", func(t *testing.T) {
		for _, u := range []string{"http://127.0.0.1:8080", "http://[::1]:8080/realm", "http://localhost:1"} {
			c := base()
			c.Issuer = u
			if err := c.Validate(); err != nil {
				t.Errorf("%s: %v", u, err)
			}
		}
	})
	t.Run("secret errors never quote the secret", func(t *testing.T) {
		c := base()
		c.Algorithms = []string{"HS256"}
		c.HMAC = &auth.HMACConfig{KeyID: "k", SecretEnv: "PRISM_TEST_SHORT_SECRET"}
		t.Setenv("PRISM_TEST_SHORT_SECRET", "sekrit-value")
		_, err := auth.New(c)
		if err == nil || strings.Contains(err.Error(), "sekrit-value") || !strings.Contains(err.Error(), "hmac") {
			t.Fatalf("New = %v, want an hmac error without the secret", err)
		}
		c.HMAC.SecretEnv = "PRISM_TEST_UNSET_SECRET_VAR"
		if _, err := auth.New(c); err == nil || !strings.Contains(err.Error(), "hmac.secret_env") {
			t.Fatalf("New = %v, want hmac.secret_env named", err)
		}
	})
	t.Run("New does not keep a pointer to the caller's slices", func(t *testing.T) {
		c := base()
		a, err := auth.New(c)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		c.Algorithms[0] = "none"
		if a.Config().Algorithms[0] != "RS256" {
			t.Fatal("the Authorizer shares the caller's Algorithms slice")
		}
	})
}
