package ctl

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/oauth2"

	"github.com/prism-suite/prism/reference/login"
)

// EnvToken names the environment variable holding a bearer token, used
// when --token is not given.
const EnvToken = "PRISM_TOKEN"

// TokenSource is where every prismctl command's token comes from, in this
// order: explicit (--token), else $PRISM_TOKEN, as a static token; else the
// token file of prismctl login ($PRISM_TOKEN_FILE or ~/.prism/token),
// refreshed with its refresh token before it expires and written back;
// else nil: calls carry no token. A token file that cannot be used
// (group/world readable, garbage) is an error, so that no call is made
// with a token other than the one the user meant.
func TokenSource(ctx context.Context, explicit string) (oauth2.TokenSource, error) {
	if explicit == "" {
		explicit = os.Getenv(EnvToken)
	}
	if explicit != "" {
		return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: explicit, TokenType: "Bearer"}), nil
	}
	path, err := login.DefaultPath()
	if err != nil {
		return nil, err
	}
	ts, err := login.TokenSource(ctx, path, login.DefaultEarlyExpiry, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return ts, nil
}
