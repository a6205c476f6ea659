package redis

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prism-suite/prism/backends/sdk"
)

var (
	_ sdk.BackendCredentials = (*Driver)(nil)
	_ sdk.CredentialRotator  = (*Driver)(nil)
)

// AuthenticatesWithCredentials implements sdk.BackendCredentials: the
// driver authenticates with the credentials username and password only
// (auth.backend-credentials).
func (d *Driver) AuthenticatesWithCredentials() {}

// RotateCredentials implements sdk.CredentialRotator (auth.rotation). It
// builds a new client with the new credentials and the current options,
// checks them with AUTH (HELLO) and PING, and swaps it in: new calls use it
// at once, calls in flight finish on the old client, which is closed once
// the last of them is done. It returns then (or when ctx ends), so the
// caller may revoke the old credentials.
//
// Open subscriptions stay on the shared connection they were made on (it
// is not cut under them); the old client stays open for them until they end,
// and should that connection ever reconnect, it authenticates with the new
// credentials. On any error the old client and credentials stay in use.
func (d *Driver) RotateCredentials(ctx context.Context, credentials map[string]string) error {
	cred, err := parseCredentials(credentials)
	if err != nil {
		return err
	}
	cur := d.cur.Load()
	if cur == nil {
		return fmt.Errorf("rotate credentials: redis plugin is not initialized or is closed: %w", sdk.ErrUnavailable)
	}
	c, err := connect(ctx, cur.opts, cred)
	if err != nil {
		return err
	}
	d.mu.Lock()
	old := d.cur.Load()
	if old == nil {
		d.mu.Unlock()
		_ = c.client.Close()
		return fmt.Errorf("rotate credentials: redis plugin was closed meanwhile: %w", sdk.ErrUnavailable)
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

// connLife tracks the calls and subscriptions on a conn, so that a conn
// replaced by rotation is closed only once nothing uses it.
type connLife struct {
	// cred is what the client's new connections authenticate with.
	cred    atomic.Pointer[Credentials]
	calls   atomic.Int64
	subs    atomic.Int64
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

// credentials is the client's credentials provider.
func (l *connLife) credentials(context.Context) (string, string, error) {
	c := l.cred.Load()
	return c.Username, c.Password, nil
}

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

func (c *conn) subOpened() { c.life.subs.Add(1) }

func (c *conn) subClosed() {
	if c.life.subs.Add(-1) == 0 {
		c.maybeClose()
	}
}

// retire marks c as replaced: no new call starts on it, and it closes once
// the calls and subscriptions on it are done. cred, when not nil, is what its
// connections authenticate with from now on.
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
	if !c.life.retired.Load() || c.life.calls.Load() != 0 || c.life.subs.Load() != 0 {
		return
	}
	c.closeNow()
}

// closeNow closes the conn's shared subscription connection and client, once.
func (c *conn) closeNow() error {
	var err error
	c.life.closeOnce.Do(func() {
		c.ps.close()
		err = c.client.Close()
	})
	return err
}
