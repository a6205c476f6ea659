// Package devidp runs prism-dev-idp (reference/devidp) as a process for the
// harness and acts as its user: it drives the device flow with
// golang.org/x/oauth2, approving the device by submitting the provider's
// HTML verification form over HTTP, as a person at a browser would (there
// is no auto-approve switch), and revokes tokens with
// zitadel/oidc's relying party.
//
//	idp, err := devidp.Start(ctx, devidp.DefaultOptions())
//	...
//	defer idp.Stop()
//	tok, err := idp.DeviceLogin(ctx)            // access token (a JWT) and refresh token
//	next, err := idp.Refresh(ctx, tok.RefreshToken)
package devidp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client"
	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"

	refdevidp "github.com/prism-suite/prism/reference/devidp"
	"github.com/prism-suite/prism/reference/login"
)

// Options configure Start. Use [DefaultOptions] and change fields.
type Options struct {
	// Binary is the prism-dev-idp binary.
	Binary string
	// User, Password, Groups, Audience and ClientID are the provider's
	// user, its groups (the access token's groups claim), the tokens'
	// audience and the public client.
	User, Password, Audience, ClientID string
	Groups                             []string
	// AccessTokenTTL and RefreshTokenTTL are the tokens' lifetimes.
	AccessTokenTTL, RefreshTokenTTL time.Duration
	// StartTimeout bounds the wait for the provider to serve discovery.
	StartTimeout time.Duration
}

// DefaultOptions returns bin/prism-dev-idp with its defaults (user
// dev@local.prism, password prism-dev, groups prism:default:read and
// prism:default:write, audience prism-proxy, client prismctl), tokens of 5
// minutes and refresh tokens of an hour.
func DefaultOptions() Options {
	return Options{Binary: "bin/prism-dev-idp", User: refdevidp.DefaultUser, Password: refdevidp.DefaultPassword,
		Audience: refdevidp.DefaultAudience, ClientID: refdevidp.DefaultClient, Groups: slices.Clone(refdevidp.DefaultGroups),
		AccessTokenTTL: refdevidp.DefaultAccessTokenTTL, RefreshTokenTTL: time.Hour, StartTimeout: 30 * time.Second}
}

// IdP is a running prism-dev-idp process.
type IdP struct {
	// Issuer is its issuer URL, http://127.0.0.1:<port>.
	Issuer string
	opts   Options
	cmd    *exec.Cmd
	dir    string
	stderr *bytes.Buffer
	mu     sync.Mutex
	exited chan struct{}
	http   *http.Client
	disc   *oidc.DiscoveryConfiguration
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Start runs the provider on 127.0.0.1 (a free port) and waits until it
// serves its discovery document. On error the process is stopped.
func Start(ctx context.Context, opts Options) (*IdP, error) {
	bin, err := filepath.Abs(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("start prism-dev-idp: %w", err)
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("start prism-dev-idp: %w (build it with go tool task build)", err)
	}
	dir, err := os.MkdirTemp("", "prism-dev-idp-")
	if err != nil {
		return nil, fmt.Errorf("start prism-dev-idp: %w", err)
	}
	i := &IdP{opts: opts, dir: dir, stderr: &bytes.Buffer{}, exited: make(chan struct{}),
		http: &http.Client{Timeout: 10 * time.Second}}
	addrFile := filepath.Join(dir, "addr.json")
	args := []string{"--listen", "127.0.0.1:0", "--addr-file", addrFile, "--poll-interval", "1s",
		"--user", opts.User, "--password", opts.Password, "--audience", opts.Audience, "--client-id", opts.ClientID,
		"--groups", strings.Join(opts.Groups, ","),
		"--access-token-ttl", opts.AccessTokenTTL.String(), "--refresh-token-ttl", opts.RefreshTokenTTL.String()}
	i.cmd = exec.Command(bin, args...)
	i.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	w := lockedWriter{&i.mu, i.stderr}
	i.cmd.Stdout, i.cmd.Stderr = w, w
	if err := i.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start prism-dev-idp %s: %w", bin, err)
	}
	go func() { _ = i.cmd.Wait(); close(i.exited) }()
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := i.waitReady(ctx, addrFile); err != nil {
		i.Stop()
		return nil, err
	}
	return i, nil
}

// waitReady polls the address file, then discovery, until both answer.
func (i *IdP) waitReady(ctx context.Context, addrFile string) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if i.Issuer == "" {
			if b, err := os.ReadFile(addrFile); err == nil {
				var a refdevidp.Addr
				if err := json.Unmarshal(b, &a); err != nil {
					return fmt.Errorf("read prism-dev-idp addr file: %w", err)
				}
				i.Issuer = a.Issuer
			}
		}
		if i.Issuer != "" {
			if i.disc, last = client.Discover(ctx, i.Issuer, i.http); last == nil {
				return nil
			}
		}
		select {
		case <-i.exited:
			return fmt.Errorf("start prism-dev-idp: it exited before serving; stderr:\n%s", i.Stderr())
		case <-ctx.Done():
			return fmt.Errorf("start prism-dev-idp: not serving discovery within %v (last: %v); stderr:\n%s", i.opts.StartTimeout, last, i.Stderr())
		case <-tick.C:
		}
	}
}

// Stderr returns what the provider wrote so far.
func (i *IdP) Stderr() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.stderr.String()
}

// Stop ends the provider (SIGTERM, then SIGKILL after 5s) and removes its
// files.
func (i *IdP) Stop() {
	if i.cmd.Process != nil {
		_ = i.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-i.exited:
		case <-time.After(5 * time.Second):
			_ = i.cmd.Process.Kill()
			<-i.exited
		}
	}
	os.RemoveAll(i.dir)
}

// Options returns the options the provider was started with.
func (i *IdP) Options() Options { return i.opts }

// OAuth2 returns the x/oauth2 config of the public client.
func (i *IdP) OAuth2(scopes ...string) *oauth2.Config {
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess}
	}
	return &oauth2.Config{ClientID: i.opts.ClientID, Scopes: scopes, Endpoint: oauth2.Endpoint{
		AuthURL: i.disc.AuthorizationEndpoint, DeviceAuthURL: i.disc.DeviceAuthorizationEndpoint,
		TokenURL: i.disc.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
}

func (i *IdP) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, i.http)
}

// DeviceLogin logs in with prismctl's own code (reference/login.Login: the
// device flow) and approves the device as the user through the
// verification form.
func (i *IdP) DeviceLogin(ctx context.Context) (*oauth2.Token, error) {
	f, err := login.Login(ctx, login.Options{Issuer: i.Issuer, ClientID: i.opts.ClientID, HTTPClient: i.http,
		Prompt: func(da *oauth2.DeviceAuthResponse) error {
			return SubmitDeviceForm(ctx, i.http, da.VerificationURIComplete, i.opts.User, i.opts.Password, "approve")
		}})
	if err != nil {
		return nil, err
	}
	return f.Token, nil
}

// Refresh exchanges refreshToken for a new token (and, the provider
// rotating them, a new refresh token).
func (i *IdP) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return i.OAuth2().TokenSource(i.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// Revoke revokes token (RFC 7009) with hint "refresh_token" or
// "access_token".
func (i *IdP) Revoke(ctx context.Context, token, hint string) error {
	party, err := rp.NewRelyingPartyOIDC(ctx, i.Issuer, i.opts.ClientID, "", "", nil, rp.WithHTTPClient(i.http))
	if err != nil {
		return fmt.Errorf("relying party: %w", err)
	}
	if err := rp.RevokeToken(ctx, party, token, hint); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

// SubmitDeviceForm acts as the user at the device verification page:
// it GETs pageURL (verification_uri_complete), finds the page's form, fills
// in username and password, keeps the prefilled user code, and submits it
// with the button whose value is action ("approve" or "deny"). It fails
// unless the provider answers 200 without an error on the page.
func SubmitDeviceForm(ctx context.Context, hc *http.Client, pageURL, user, password, action string) error {
	return submitForm(ctx, hc, pageURL, map[string]string{"username": user, "password": password}, "action", action)
}

// SubmitLoginForm acts as the user at the code flow's login page: it GETs
// pageURL, fills in username and password and submits the form, following
// redirects with hc (give hc a CheckRedirect that stops at the client's
// redirect URI to read the code). It returns the last response.
func SubmitLoginForm(ctx context.Context, hc *http.Client, pageURL, user, password string) (*http.Response, error) {
	return postForm(ctx, hc, pageURL, map[string]string{"username": user, "password": password}, "", "")
}

func submitForm(ctx context.Context, hc *http.Client, pageURL string, fill map[string]string, button, value string) error {
	resp, err := postForm(ctx, hc, pageURL, fill, button, value)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`class="error"`)) {
		return fmt.Errorf("submit the form of %s: %s: %s", pageURL, resp.Status, pageText(body))
	}
	return nil
}

// postForm GETs the page, reads its first form and POSTs it filled in.
func postForm(ctx context.Context, hc *http.Client, pageURL string, fill map[string]string, button, value string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pageURL, nil)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", pageURL, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", pageURL, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("open %s: %s %v: %s", pageURL, resp.Status, err, pageText(body))
	}
	action, fields, err := parseForm(body)
	if err != nil {
		return nil, fmt.Errorf("read the form of %s: %w", pageURL, err)
	}
	for k, v := range fill {
		if _, ok := fields[k]; !ok {
			return nil, fmt.Errorf("the form of %s has no field %q", pageURL, k)
		}
		fields.Set(k, v)
	}
	if button != "" {
		fields.Set(button, value)
	}
	base, _ := url.Parse(pageURL)
	target, err := base.Parse(action)
	if err != nil {
		return nil, fmt.Errorf("the form of %s has action %q: %w", pageURL, action, err)
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, target.String(), strings.NewReader(fields.Encode()))
	if err != nil {
		return nil, fmt.Errorf("submit %s: %w", target, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("submit %s: %w", target, err)
	}
	return resp, nil
}

// parseForm returns the action of the page's first form and its input
// fields with their values (buttons left out: the caller picks one).
func parseForm(page []byte) (string, url.Values, error) {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return "", nil, err
	}
	var form *html.Node
	var find func(*html.Node)
	find = func(n *html.Node) {
		if form != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" {
			form = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			find(c)
		}
	}
	find(doc)
	if form == nil {
		return "", nil, errors.New("no form on the page")
	}
	fields := url.Values{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" {
			if name := attr(n, "name"); name != "" {
				fields.Set(name, attr(n, "value"))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(form)
	return attr(form, "action"), fields, nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// pageText is a page's text, for error messages.
func pageText(body []byte) string {
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		return string(body)
	}
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "style" || n.Data == "script") {
			return
		}
		if n.Type == html.TextNode {
			if t := strings.TrimSpace(n.Data); t != "" {
				b.WriteString(t + " ")
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return strings.TrimSpace(b.String())
}
