package ctl

import (
	"context"
	"fmt"
	"io"
	"strings"

	"golang.org/x/oauth2"

	"github.com/prism-suite/prism/reference/login"
)

// EnvIssuer names the environment variable holding the issuer of prismctl
// login, used when --issuer is not given.
const EnvIssuer = "PRISM_ISSUER"

// DefaultIssuer is prism-dev-idp's default address (go tool task dev).
const DefaultIssuer = "http://127.0.0.1:9400"

// runLogin is prismctl login: the device flow, then the token file.
func runLogin(ctx context.Context, issuer, clientID string, stdout, stderr io.Writer) int {
	path, err := login.DefaultPath()
	if err != nil {
		fmt.Fprintf(stderr, "prismctl: %v\n", err)
		return ExitFailed
	}
	f, err := login.Login(ctx, login.Options{Issuer: issuer, ClientID: clientID, Prompt: func(da *oauth2.DeviceAuthResponse) error {
		fmt.Fprintf(stderr, "To log in, open %s\nand enter the code %s", da.VerificationURI, da.UserCode)
		if da.VerificationURIComplete != "" {
			fmt.Fprintf(stderr, " (or open %s)", da.VerificationURIComplete)
		}
		fmt.Fprintln(stderr, "\nWaiting for approval...")
		return nil
	}})
	if err != nil {
		fmt.Fprintf(stderr, "prismctl: %v\n", err)
		return ExitFailed
	}
	if err := login.Save(path, f); err != nil {
		fmt.Fprintf(stderr, "prismctl: %v\n", err)
		return ExitFailed
	}
	refresh := "no refresh token: log in again then"
	if f.Token.RefreshToken != "" {
		refresh = "refreshed automatically with its refresh token"
	}
	fmt.Fprintf(stdout, "logged in to %s; token saved to %s (expires %s, %s)\n", issuer, path,
		f.Token.Expiry.Local().Format("2006-01-02 15:04:05"), refresh)
	return ExitOK
}

// runLogout is prismctl logout: revoke the refresh token, remove the file.
func runLogout(ctx context.Context, stdout, stderr io.Writer) int {
	path, err := login.DefaultPath()
	if err != nil {
		fmt.Fprintf(stderr, "prismctl: %v\n", err)
		return ExitFailed
	}
	removed, err := login.Logout(ctx, path, nil)
	if err != nil {
		fmt.Fprintf(stderr, "prismctl: %v\n", strings.TrimPrefix(err.Error(), "logout: "))
		return ExitFailed
	}
	if !removed {
		fmt.Fprintf(stdout, "not logged in (no %s)\n", path)
		return ExitOK
	}
	fmt.Fprintf(stdout, "logged out: refresh token revoked, %s removed\n", path)
	return ExitOK
}
