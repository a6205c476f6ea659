package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.yaml.in/yaml/v3"
)

// AdminConfig is the admin: block of the proxy config. It turns on the admin
// API (prism.admin.v1, see admin.go) on its own listener:
//
//	admin:
//	  listen: 127.0.0.1:7072
//	  role: {claim: groups, value: prism-admin}   # who is an admin
//	  store: {file: ./admin-store.json, poll_interval: 500ms}
//	  audit_log: ./audit.jsonl
//
// The admin API needs auth: (the same issuer and JWKS as the data plane);
// there is no unauthenticated admin mode. Relative paths are relative to the
// config file's folder.
type AdminConfig struct {
	// Listen is the admin gRPC listen address (host:port; port 0 picks one).
	Listen string `yaml:"listen"`
	// Role says which tokens are admin tokens.
	Role AdminRole `yaml:"role"`
	// Store is where the admin-managed namespaces persist.
	Store AdminStore `yaml:"store"`
	// AuditLog is the file every admin change is appended to, one JSON
	// object a line.
	AuditLog string `yaml:"audit_log"`
}

// AdminRole is the claim of a verified token that makes it an admin token:
// the claim holds Value, as a string, one of a space-separated string's
// words, or one element of an array of strings.
type AdminRole struct {
	Claim string `yaml:"claim"`
	Value string `yaml:"value"`
}

// AdminStore is where admin-managed namespaces persist. File is a JSON file
// written atomically (temp file and rename) under an advisory lock
// (<file>.lock), so proxies sharing it serialise their changes; each proxy
// re-reads it before every admin call and every PollInterval.
type AdminStore struct {
	File string `yaml:"file,omitempty"`
	// Namespace (a KeyValue namespace as the store) is not supported yet.
	Namespace string `yaml:"namespace,omitempty"`
	// PollInterval is how often the file is re-read for changes made by
	// another proxy (default 500ms).
	PollInterval time.Duration `yaml:"poll_interval,omitempty"`
}

// DefaultAdminPollInterval is the admin store's default poll interval.
const DefaultAdminPollInterval = 500 * time.Millisecond

func (c Config) checkAdmin() []error {
	a := c.Admin
	if a == nil {
		return nil
	}
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if c.Auth == nil {
		add("admin", "needs auth: (issuer, audience, grants): every admin call needs an admin token, and there is no unauthenticated admin mode")
	}
	if err := checkHostPort(a.Listen); err != nil {
		add("admin.listen", "%v", err)
	} else if _, port, _ := net.SplitHostPort(a.Listen); a.Listen == c.Listen && port != "0" {
		add("admin.listen", "%q is the data plane's listen address; the admin API needs its own", a.Listen)
	}
	if a.Role.Claim == "" {
		add("admin.role.claim", "is required: the token claim that carries the admin role (e.g. groups)")
	}
	if a.Role.Value == "" {
		add("admin.role.value", "is required: the value of role.claim that makes a token an admin token")
	}
	switch {
	case a.Store.Namespace != "":
		add("admin.store.namespace", "a KeyValue namespace as the admin store is not supported yet; give store.file")
	case a.Store.File == "":
		add("admin.store.file", "is required: the JSON file the admin-managed namespaces persist in")
	}
	if a.Store.PollInterval < 0 {
		add("admin.store.poll_interval", "must not be negative, got %v", a.Store.PollInterval)
	}
	if a.AuditLog == "" {
		add("admin.audit_log", "is required: the JSON-lines file every admin change is written to")
	}
	return errs
}

// ParseNamespace decodes and validates one namespace given in the YAML shape
// of an entry of the config's namespaces list (JSON is YAML too), as the
// admin API receives it. It is checked by the same code as a config file's
// namespaces, against c's settings (relative paths resolve against c's
// folder); errors start with "namespace (<name>)" and name the field, e.g.
// "namespace (orders).plugin.binary: ...".
func (c Config) ParseNamespace(spec []byte) (Namespace, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(spec, &root); err != nil {
		return Namespace{}, fmt.Errorf("namespace: %w", err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return Namespace{}, errors.New("namespace: is empty: give name, pattern and plugin")
	}
	doc := root.Content[0]
	at := "namespace"
	if n := child(doc, "name"); n != nil && n.Kind == yaml.ScalarNode && n.Value != "" {
		at += " (" + n.Value + ")"
	}
	if errs := checkNamespaceShape(doc, at); len(errs) > 0 {
		return Namespace{}, errors.Join(errs...)
	}
	var ns Namespace
	dec := yaml.NewDecoder(bytes.NewReader(spec))
	dec.KnownFields(true)
	if err := dec.Decode(&ns); err != nil && !errors.Is(err, io.EOF) {
		return Namespace{}, fmt.Errorf("%s: %w", at, err)
	}
	return ns, errors.Join(c.checkNamespace(at, ns)...)
}
