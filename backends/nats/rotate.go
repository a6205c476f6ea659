package nats

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prism-suite/prism/backends/sdk"
)

var (
	_ sdk.BackendCredentials = (*Driver)(nil)
	_ sdk.CredentialRotator  = (*Driver)(nil)
)

// AuthenticatesWithCredentials implements sdk.BackendCredentials: the
// driver authenticates with the credentials user and password, or token
// (auth.backend-credentials).
func (d *Driver) AuthenticatesWithCredentials() {}

// RotateCredentials implements sdk.CredentialRotator (auth.rotation). It
// connects anew with the new credentials (the server checks them in the
// handshake) and binds to JetStream and the object store, then swaps the new
// connection in: new calls use it at once, calls in flight finish on the old
// one, which is closed once the last of them is done. It returns then (or
// when ctx ends), so the caller may revoke the old credentials.
//
// Open subscriptions stay on the connection they were made on, which stays
// open for them until they end; its reconnects authenticate with the new
// credentials, so when the server drops it because the old user was
// removed, it comes back as the new user and its subscriptions resume (core
// messages published in between are lost, as in any reconnect). On any
// error the old connection and credentials stay in use.
func (d *Driver) RotateCredentials(ctx context.Context, credentials map[string]string) error {
	cred, err := parseCredentials(credentials)
	if err != nil {
		return err
	}
	cur := d.cur.Load()
	if cur == nil {
		return fmt.Errorf("rotate credentials: nats plugin is not initialized or is closed: %w", sdk.ErrUnavailable)
	}
	c, err := connect(ctx, cur.opts, cred, false)
	if err != nil {
		return err
	}
	d.mu.Lock()
	old := d.cur.Load()
	if old == nil {
		d.mu.Unlock()
		c.nc.Close()
		return fmt.Errorf("rotate credentials: nats plugin was closed meanwhile: %w", sdk.ErrUnavailable)
	}
	d.cur.Store(c)
	old.retire(&cred)
	d.mu.Unlock()
	select {
	case <-old.life.idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rotate credentials: the new credentials are in use, but calls on the old ones are still in flight: %w", ctx.Err())
	}
}

// bind sets up JetStream on a connection whose stream and object store
// exist (Init created them).
func (c *conn) bind(ctx context.Context) error {
	js, err := jetstream.New(c.nc, jetstream.WithDefaultTimeout(c.opts.RequestTimeout))
	if err != nil {
		return fmt.Errorf("set up jetstream: %w", err)
	}
	c.js = js
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if c.objects, err = js.ObjectStore(ctx, c.opts.PayloadBucket); err != nil {
		return wrap(ctx, fmt.Sprintf("bind object store %q", c.opts.PayloadBucket), err)
	}
	return nil
}

// hasUserInfo reports whether any of the comma-separated URLs carries user
// info (nats.go then authenticates with it, and the credential handlers
// must not be installed).
func hasUserInfo(urls string) bool {
	for _, s := range strings.Split(urls, ",") {
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.User != nil {
			return true
		}
	}
	return false
}

// connLife tracks the calls on a conn (its subscriptions are conn.subs), so
// that a conn replaced by rotation is closed only once nothing uses it.
type connLife struct {
	// cred is what the connection authenticates with when it (re)connects.
	cred    atomic.Pointer[Credentials]
	calls   atomic.Int64
	retired atomic.Bool
	// idle is closed once the conn is retired and no call is in flight.
	idle      chan struct{}
	idleOnce  sync.Once
	closeOnce sync.Once
}

func (l *connLife) init(cred Credentials) {
	l.cred.Store(&cred)
	l.idle = make(chan struct{})
}

// userInfo and token are the connection's credential handlers.
func (l *connLife) userInfo() (string, string) {
	c := l.cred.Load()
	return c.User, c.Password
}

func (l *connLife) token() string { return l.cred.Load().Token }

// acquire counts a call on c, unless c is retired.
func (c *conn) acquire() bool {
	c.life.calls.Add(1)
	if !c.life.retired.Load() {
		return true
	}
	c.release()
	return false
}

// release ends a call counted by acquire.
func (c *conn) release() {
	if c.life.calls.Add(-1) == 0 && c.life.retired.Load() {
		c.life.idleOnce.Do(func() { close(c.life.idle) })
		c.maybeClose()
	}
}

// subClosed ends a subscription counted in c.subs.
func (c *conn) subClosed() {
	if c.subs.Add(-1) == 0 {
		c.maybeClose()
	}
}

// retire marks c as replaced: no new call starts on it, and it closes once
// the calls and subscriptions on it are done. cred, when not nil, is what it
// authenticates with from now on when it reconnects.
func (c *conn) retire(cred *Credentials) {
	if cred != nil {
		c.life.cred.Store(cred)
	}
	c.life.retired.Store(true)
	if c.life.calls.Load() == 0 {
		c.life.idleOnce.Do(func() { close(c.life.idle) })
	}
	c.maybeClose()
}

// maybeClose closes a retired conn nothing uses any more.
func (c *conn) maybeClose() {
	if c.life.retired.Load() && c.life.calls.Load() == 0 && c.subs.Load() == 0 {
		c.closeNow()
	}
}

// closeNow closes the connection, once.
func (c *conn) closeNow() { c.life.closeOnce.Do(c.nc.Close) }
