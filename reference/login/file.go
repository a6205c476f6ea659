// Package login is the client side of Prism's OIDC login: the OAuth 2.0
// device authorization grant (RFC 8628) with golang.org/x/oauth2, the token
// file it writes (~/.prism/token), a token source that refreshes the token
// with its refresh token before it expires and writes the new one back, and
// logout (revoking the refresh token, removing the file). prismctl
// (reference/ctl) and the Go client (reference/client.WithTokenSource) use
// it.
//
// # The token file
//
// $PRISM_TOKEN_FILE, else $HOME/.prism/token: JSON with the issuer, the
// client id, the token and revocation endpoints, and the token (access
// token, refresh token, expiry). It is written atomically (a temporary
// file renamed over it) with mode 0600 in a directory of mode 0700. A file
// that its group or others may read or write is refused, naming the file
// and its mode; so is one that is not a token file. Nothing is written when
// a login or a refresh fails.
package login

import (
	"github.com/google/renameio/v2"

	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"
)

// ErrLoginNeeded is wrapped by every error that a new login fixes: no
// token file, an expired token without a refresh token, a refresh token the
// issuer refused.
var ErrLoginNeeded = errors.New("run prismctl login")

// EnvTokenFile names the environment variable that overrides the token
// file's path.
const EnvTokenFile = "PRISM_TOKEN_FILE"

// File is the content of the token file.
type File struct {
	// Issuer is the OIDC issuer that issued the token.
	Issuer string `json:"issuer"`
	// ClientID is the OAuth client the token was issued to.
	ClientID string `json:"client_id"`
	// TokenURL is the issuer's token endpoint (refresh).
	TokenURL string `json:"token_endpoint"`
	// RevocationURL is the issuer's revocation endpoint ("" if none).
	RevocationURL string `json:"revocation_endpoint,omitempty"`
	// Token is the access token, its expiry and the refresh token.
	Token *oauth2.Token `json:"token"`
}

// DefaultPath returns $PRISM_TOKEN_FILE, else $HOME/.prism/token.
func DefaultPath() (string, error) {
	if p := os.Getenv(EnvTokenFile); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the token file: %w (set $HOME or $%s)", err, EnvTokenFile)
	}
	return filepath.Join(home, ".prism", "token"), nil
}

// Load reads the token file at path. A missing file wraps
// [ErrLoginNeeded] and os.ErrNotExist; a file its group or others may read
// or write, or one that is not a token file, is refused.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no token file %s: %w: %w", path, ErrLoginNeeded, os.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("token file %s is not a regular file (%v)", path, st.Mode())
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("token file %s has mode %#o: its group or others may read or write it, so it is not used "+
			"(chmod 600 %s if it is yours, or run prismctl login again)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	var tf File
	if err := json.Unmarshal(b, &tf); err != nil {
		return nil, fmt.Errorf("token file %s is not a token file (%v): %w", path, err, ErrLoginNeeded)
	}
	if err := tf.validate(); err != nil {
		return nil, fmt.Errorf("token file %s is not a token file (%v): %w", path, err, ErrLoginNeeded)
	}
	return &tf, nil
}

func (f *File) validate() error {
	var errs []error
	if f.Issuer == "" {
		errs = append(errs, errors.New("issuer is missing"))
	}
	if f.ClientID == "" {
		errs = append(errs, errors.New("client_id is missing"))
	}
	if f.TokenURL == "" {
		errs = append(errs, errors.New("token_endpoint is missing"))
	}
	if f.Token == nil || f.Token.AccessToken == "" {
		errs = append(errs, errors.New("token.access_token is missing"))
	}
	return errors.Join(errs...)
}

// Save writes f to path atomically with mode 0600, creating its directory
// with mode 0700 when missing.
func Save(path string, f *File) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	// 0600 whatever the umask: a token file others may read is refused.
	if err := renameio.WriteFile(path, append(b, '\n'), 0o600, renameio.WithStaticPermissions(0o600)); err != nil {
		return fmt.Errorf("save token to %s: %w", path, err)
	}
	return nil
}

// expiry formats a token's expiry for messages.
func expiry(t *oauth2.Token) string {
	if t.Expiry.IsZero() {
		return "an unknown time"
	}
	return t.Expiry.Local().Format(time.RFC3339)
}
