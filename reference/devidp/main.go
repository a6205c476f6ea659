package devidp

import (
	"github.com/google/renameio/v2"

	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const usage = `prism-dev-idp is a small OpenID Provider for local runs and tests (not for production).

Usage:
  prism-dev-idp [--listen 127.0.0.1:9400] [--addr-file FILE] [--groups a,b] [--password P]
                [--audience prism-proxy] [--client-id prismctl] [--key-file FILE]

It serves discovery, a JWKS, the device flow (verification page /device), the code flow
with PKCE (login page /login), refresh tokens (rotated) and revocation, for one user,
dev@local.prism, whose groups go into the access token's "groups" claim.

Flags:
`

// Addr is what --addr-file holds once the provider listens.
type Addr struct {
	// Issuer is the issuer URL, http://<listen address>.
	Issuer string `json:"issuer"`
	PID    int    `json:"pid"`
}

// Main is prism-dev-idp: it listens, writes --addr-file, serves until
// SIGTERM or SIGINT and returns the exit code.
func Main(args []string, stderr io.Writer) int {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("prism-dev-idp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	listen := fs.String("listen", "127.0.0.1:9400", "listen address, a loopback host (port 0: any free port); the issuer is http://<address>")
	addrFile := fs.String("addr-file", "", "write the issuer URL and pid as JSON to this file once listening")
	keyFile := fs.String("key-file", "", "RSA private key (PEM) to sign with; created if missing (default: a new key at each start)")
	groups := fs.String("groups", strings.Join(DefaultGroups, ","), "the user's groups, comma-separated (the access token's groups claim)")
	clients := fs.String("client-id", DefaultClient, "public client ids, comma-separated")
	redirects := fs.String("redirect-uris", strings.Join(cfg.RedirectURIs, ","), "the code flow's redirect URIs, comma-separated (a loopback one matches any port)")
	fs.StringVar(&cfg.User, "user", cfg.User, "the user's name")
	fs.StringVar(&cfg.Password, "password", cfg.Password, "the user's password")
	fs.StringVar(&cfg.Audience, "audience", cfg.Audience, "the access tokens' audience (the proxy's auth.audience)")
	fs.DurationVar(&cfg.AccessTokenTTL, "access-token-ttl", cfg.AccessTokenTTL, "access token lifetime")
	fs.DurationVar(&cfg.RefreshTokenTTL, "refresh-token-ttl", cfg.RefreshTokenTTL, "refresh token lifetime, from its issue (each refresh issues a new one)")
	fs.DurationVar(&cfg.DeviceCodeTTL, "device-code-ttl", cfg.DeviceCodeTTL, "device code and login request lifetime")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", cfg.PollInterval, "device flow polling interval (whole seconds)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "prism-dev-idp: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg.Groups = splitList(*groups)
	cfg.Clients = splitList(*clients)
	cfg.RedirectURIs = splitList(*redirects)
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		fmt.Fprintf(stderr, "prism-dev-idp: --listen %q must be a loopback host and port, e.g. 127.0.0.1:9400: it serves plain http\n", *listen)
		return 2
	}
	if *keyFile != "" {
		k, err := LoadKey(*keyFile)
		if errors.Is(err, os.ErrNotExist) {
			if k, err = GenerateKey(); err == nil {
				err = WriteKey(*keyFile, k)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "prism-dev-idp: --key-file: %v\n", err)
			return 2
		}
		cfg.Key = k
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "prism-dev-idp: %v\n", err)
		return 1
	}
	cfg.Issuer = "http://" + ln.Addr().String()
	p, err := New(cfg)
	if err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "prism-dev-idp: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	slog.SetDefault(log) // zitadel's op logs through the default logger
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if *addrFile != "" {
		if err := writeJSON(*addrFile, Addr{Issuer: cfg.Issuer, PID: os.Getpid()}); err != nil {
			fmt.Fprintf(stderr, "prism-dev-idp: %v\n", err)
			_ = srv.Close()
			return 1
		}
	}
	log.Info("serving", "issuer", cfg.Issuer, "user", cfg.User, "groups", cfg.Groups, "audience", cfg.Audience,
		"clients", cfg.Clients, "kid", p.KeyID())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-errc:
		fmt.Fprintf(stderr, "prism-dev-idp: %v\n", err)
		return 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// writeJSON writes v to path atomically, so a reader never sees half a file.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	if err := renameio.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write addr file: %w", err)
	}
	return nil
}
