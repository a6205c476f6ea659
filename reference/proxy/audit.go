package proxy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// AuditEntry is one line of the admin audit log (JSON lines): who did
// what to which namespace or plugin, the namespace before and after
// (redacted: plugin config values whose key looks like a secret and
// passwords in URLs are replaced with [REDACTED]; credential references
// stay, they name an env variable or a file, never a value), and the
// outcome: "ok" or the gRPC code of the refusal.
type AuditEntry struct {
	Time time.Time `json:"time"`
	// Subject is the sub claim of the caller's token.
	Subject string `json:"subject"`
	// Action is namespace.create, namespace.update, namespace.delete,
	// plugin.drain or plugin.restart.
	Action    string `json:"action"`
	Namespace string `json:"namespace,omitempty"`
	Plugin    string `json:"plugin,omitempty"`
	// Revision is the namespace's revision after the change.
	Revision int64  `json:"revision,omitempty"`
	Before   any    `json:"before,omitempty"`
	After    any    `json:"after,omitempty"`
	Outcome  string `json:"outcome"`
	Error    string `json:"error,omitempty"`
}

// auditLog appends entries to a file, one JSON object a line, each
// written whole and synced before the admin call answers.
type auditLog struct {
	mu sync.Mutex
	f  *os.File
}

func openAudit(path string) (*auditLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open admin.audit_log: %w", err)
	}
	return &auditLog{f: f}, nil
}

func (a *auditLog) write(e AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return a.f.Sync()
}

func (a *auditLog) close() { _ = a.f.Close() }

// redactedSpec returns a namespace spec (YAML) as a document for the audit
// log, redacted; nil for "".
func redactedSpec(spec string) any {
	if spec == "" {
		return nil
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(spec), &doc); err != nil || doc == nil {
		return "[unparsable spec redacted]"
	}
	if p, ok := doc["plugin"].(map[string]any); ok {
		redactPlugin(p)
	}
	if s, ok := doc["slots"].(map[string]any); ok {
		for _, v := range s {
			if p, ok := v.(map[string]any); ok {
				redactPlugin(p)
			}
		}
	}
	return doc
}

// Redacted replaces a secret value in the audit log.
const Redacted = "[REDACTED]"

func redactPlugin(p map[string]any) {
	if c, ok := p["config"]; ok {
		p["config"] = redactValue(c, false)
	}
	if args, ok := p["args"].([]any); ok {
		for i, a := range args {
			if s, ok := a.(string); ok && looksSecret(s) {
				args[i] = Redacted
			}
		}
	}
	// credentials hold references ({env: VAR} or {file: path}), never
	// values: they stay.
}

// redactValue redacts a config value: everything under a key that looks
// like a secret, and the password of a URL anywhere.
func redactValue(v any, secret bool) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = redactValue(x, secret || looksSecret(k))
		}
		return v
	case []any:
		for i, x := range v {
			v[i] = redactValue(x, secret)
		}
		return v
	case nil:
		return nil
	}
	if secret {
		return Redacted
	}
	if s, ok := v.(string); ok && strings.Contains(s, "@") {
		if u, err := url.Parse(s); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "REDACTED")
				return u.String()
			}
		}
	}
	return v
}

// secretWords mark a config key (or an arg) as holding a secret.
var secretWords = []string{"pass", "secret", "token", "credential", "apikey", "api_key", "private", "auth", "cert_key", "signature"}

func looksSecret(s string) bool {
	s = strings.ToLower(s)
	for _, w := range secretWords {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}
