// Package postgres is Prism's PostgreSQL reference plugin, built on pgx v5.
//
// # Capabilities
//
// It declares keyvalue.basic, keyvalue.ttl, keyvalue.scan and
// keyvalue.batch, and auth.backend-credentials and auth.rotation: [Driver]
// satisfies those interfaces, and the SDK derives the declaration from
// that. It declares no PubSub capability (README.md says why).
//
// # Config
//
// The Initialize config document accepts these fields; any other field, or a
// field of the wrong type, is rejected with InvalidArgument naming it.
//
//	address          string, required   the server as host:port
//	database         string             database to connect to (default "postgres")
//	schema           string             schema of the table; must exist (default "public")
//	table            string             table of the keys, created if missing (default
//	                                    "prism_kv_<namespace>", see [TableFor])
//	pool_size        integer 1..10000   most connections kept (default 10)
//	connect_timeout  duration string    one connection attempt (default "2s")
//	sslmode          string             disable (default), prefer, require, verify-ca, verify-full
//	sweep_interval   duration string    how often expired rows are deleted; "0s" turns
//	                                    the sweeper off (default "1m")
//	max_key_bytes    integer 1..2048    longest key accepted (default 1024; the key is
//	                                    the primary key, and an index entry holds 2704 bytes)
//	max_value_bytes  integer 1..256 MiB largest value accepted (default 1 MiB)
//
// Host, port, database, sslmode, user and password come from the config and
// credentials only; the PG* environment variables and a password file
// cannot change them.
//
// # Credentials
//
// The Initialize credentials accept "username" (a role; empty means
// "postgres") and "password". Rejected credentials (SQLSTATE 28P01, 28000)
// and a password the server wants but was not given make Initialize fail
// with Unauthenticated; credentials never appear in errors or logs.
// RotateCredentials builds a new pool with the new credentials, checks it,
// sends new calls to it and closes the old pool once the calls in flight on
// it are done.
//
// # One role per namespace
//
// Namespaces sharing a server each get a schema owned by a role of their
// own, and plugins of the namespace use schema = that schema:
//
//	CREATE ROLE "prism-orders" LOGIN PASSWORD '...';
//	CREATE SCHEMA "orders" AUTHORIZATION "prism-orders";
//
// PostgreSQL 15 gives PUBLIC no CREATE on schema public, so the role can
// create and use its table only in its own schema. For a rotation, a second
// role that is a member of the first (CREATE ROLE "prism-orders-2" LOGIN
// PASSWORD '...' IN ROLE "prism-orders") has the same rights.
//
// # Storage and behaviour
//
// One table: k bytea PRIMARY KEY, v bytea NOT NULL, expires_at timestamptz
// (NULL: no expiry). Keys are stored as bytes, so their order is byte order
// and a prefix is a range (k >= prefix AND k < successor(prefix)): no
// pattern characters at all.
//
// Expiry is exact at read: every statement that can observe a key (Get,
// Exists, Delete's existed, Expire, Persist, TTL, Scan, Count, the batch
// calls, and the upserts that overwrite an expired row) checks expires_at
// against the server's clock_timestamp(). The sweeper goroutine only
// reclaims space: every sweep_interval it deletes rows whose expires_at has
// passed, which no read would return anyway. A TTL is any time.Duration
// (up to 292 years), which timestamptz holds without overflow.
//
// Scan is keyset pagination in byte order: the opaque cursor is the last
// key returned (base64), and the next page is the first limit keys greater
// than it. A key present for the whole scan is returned exactly once; the
// cursor holds no server state. Batches run in one transaction (pipelined
// in one round trip): applied whole or not at all.
//
// Init connects within the caller's deadline (Unavailable when the server
// cannot be reached), reads the server version (SHOW server_version) and
// creates the table if missing. Every call honours its context: a call
// past the caller's deadline reports DeadlineExceeded (pgx cancels the
// query). The pool drops broken connections and pings one idle for more
// than a second before use, so the plugin recovers by itself once the
// server is back, without a restart.
package postgres

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/prism-suite/prism/backends/sdk"
)

// Version is the plugin's version.
const Version = "0.1.0"

// healthTimeout bounds Health's ping when the caller allows longer.
const healthTimeout = time.Second

// Driver is the PostgreSQL driver. It is safe for concurrent use.
type Driver struct {
	// mu orders Configure's and RotateCredentials' swap of cur with Close.
	mu  sync.Mutex
	cur atomic.Pointer[conn]
	// stopSweep ends the sweeper goroutine, if one runs.
	stopSweep context.CancelFunc
	swept     sync.WaitGroup
}

// conn is one pool; Init and RotateCredentials replace it whole.
type conn struct {
	pool    *pgxpool.Pool
	opts    Options
	table   string // schema-qualified, quoted
	version string

	calls     atomic.Int64
	retired   atomic.Bool
	idle      chan struct{} // closed once retired and no call is in flight
	idleOnce  sync.Once
	closeOnce sync.Once
}

var (
	_ sdk.Driver             = (*Driver)(nil)
	_ sdk.KeyValueBasic      = (*Driver)(nil)
	_ sdk.KeyValueTTL        = (*Driver)(nil)
	_ sdk.KeyValueScan       = (*Driver)(nil)
	_ sdk.KeyValueBatch      = (*Driver)(nil)
	_ sdk.BackendCredentials = (*Driver)(nil)
	_ sdk.CredentialRotator  = (*Driver)(nil)
)

// New returns a Driver; Init connects it.
func New() *Driver { return &Driver{} }

// Describe implements sdk.Driver; it does not touch the server.
func (d *Driver) Describe() sdk.Description {
	info := map[string]string{"backend": "postgres"}
	if c := d.cur.Load(); c != nil && c.version != "" {
		info["server_version"] = c.version
	}
	return sdk.Description{Name: "postgres", Version: Version, Info: info}
}

// Limits implements sdk.Driver.
func (d *Driver) Limits() sdk.Limits {
	o := DefaultOptions()
	if c := d.cur.Load(); c != nil {
		o = c.opts
	}
	return sdk.Limits{MaxKeyBytes: o.MaxKeyBytes, MaxValueBytes: o.MaxValueBytes}
}

// Init implements sdk.Driver: it reads the config and credentials described
// in the package doc, then calls [Driver.Configure].
func (d *Driver) Init(ctx context.Context, cfg sdk.Config) error {
	o, cred, err := parseConfig(cfg)
	if err != nil {
		return err
	}
	return d.Configure(ctx, o, cred)
}

// Configure connects with o and cred (for in-process use; Init calls it
// after parsing the config), creates the table if missing and starts the
// sweeper. On failure the previous pool, if any, stays in use.
func (d *Driver) Configure(ctx context.Context, o Options, cred Credentials) error {
	if err := o.validate(); err != nil {
		return err
	}
	c, err := connect(ctx, o, cred)
	if err != nil {
		return err
	}
	if err := c.prepareTable(ctx, cred); err != nil {
		c.closeNow()
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old := d.cur.Swap(c); old != nil {
		old.retire()
	}
	if d.stopSweep == nil && o.SweepInterval > 0 {
		sctx, cancel := context.WithCancel(context.Background())
		d.stopSweep = cancel
		d.swept.Add(1)
		go d.sweep(sctx, o.SweepInterval)
	}
	return nil
}

// poolConfig is the pgxpool config for o and cred. Host, port, database,
// user and password are set explicitly, so neither a PG* environment
// variable nor a password file can change them.
func poolConfig(o Options, cred Credentials) (*pgxpool.Config, error) {
	host, port, _ := net.SplitHostPort(o.Address)
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(host, port), Path: "/" + o.Database}
	q := url.Values{}
	q.Set("sslmode", o.SSLMode)
	q.Set("connect_timeout", strconv.Itoa(max(1, int((o.ConnectTimeout+time.Second-1)/time.Second))))
	q.Set("application_name", "prism-postgres")
	q.Set("pool_max_conns", strconv.Itoa(o.PoolSize))
	u.RawQuery = q.Encode()
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		return nil, sdk.InvalidConfig("address", "cannot build a connection from it: %v", err)
	}
	cfg.ConnConfig.User = cred.user()
	cfg.ConnConfig.Password = cred.Password
	cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	// No fallbacks (a second host, or sslmode=prefer's plain retry, would
	// reach the server by another road than the one configured) except
	// prefer's, which is what prefer means.
	if o.SSLMode != "prefer" {
		cfg.ConnConfig.Fallbacks = nil
	}
	cfg.MinConns = 0
	cfg.HealthCheckPeriod = 5 * time.Second
	return cfg, nil
}

// connect makes a pool with o and cred, checks it with one connection and
// reads the server version.
func connect(ctx context.Context, o Options, cred Credentials) (*conn, error) {
	cfg, err := poolConfig(o, cred)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, initError(ctx, o.Address, cred, err)
	}
	c := &conn{pool: pool, opts: o, idle: make(chan struct{}),
		table: pgx.Identifier{o.Schema, o.Table}.Sanitize()}
	if err := pool.QueryRow(ctx, "SHOW server_version").Scan(&c.version); err != nil {
		pool.Close()
		return nil, initError(ctx, o.Address, cred, err)
	}
	return c, nil
}

// prepareTable creates the table if it is missing.
func (c *conn) prepareTable(ctx context.Context, cred Credentials) error {
	var schemaExists bool
	if err := c.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", c.opts.Schema).Scan(&schemaExists); err != nil {
		return initError(ctx, c.opts.Address, cred, err)
	}
	if !schemaExists {
		return sdk.InvalidConfig("schema", "postgres %s has no schema %q in database %q; create it first", c.opts.Address, c.opts.Schema, c.opts.Database)
	}
	var tableExists bool
	if err := c.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", c.table).Scan(&tableExists); err != nil {
		return initError(ctx, c.opts.Address, cred, err)
	}
	if !tableExists {
		ddl := "CREATE TABLE IF NOT EXISTS " + c.table + " (k bytea PRIMARY KEY, v bytea NOT NULL, expires_at timestamptz)"
		if _, err := c.pool.Exec(ctx, ddl); err != nil {
			return initError(ctx, c.opts.Address, cred, err)
		}
	}
	// Reading one row checks that the role may use the table.
	if _, err := c.pool.Exec(ctx, "SELECT 1 FROM "+c.table+" LIMIT 1"); err != nil {
		return initError(ctx, c.opts.Address, cred, err)
	}
	return nil
}

// Health implements sdk.Driver: a ping within min(ctx's deadline, 1s).
// Unreachable is Unhealthy; 90% or more of pool_size connections in use is
// Degraded. Details hold the pool's statistics and the server version.
func (d *Driver) Health(ctx context.Context) sdk.Health {
	c, err := d.conn("check health")
	if err != nil {
		return sdk.Health{Status: sdk.Unhealthy, Message: "not initialized"}
	}
	defer c.release()
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	pingErr := c.pool.Ping(ctx)

	st := c.pool.Stat()
	inUse := int(st.AcquiredConns())
	details := map[string]string{
		"pool_size":              strconv.Itoa(c.opts.PoolSize),
		"pool_total_conns":       strconv.Itoa(int(st.TotalConns())),
		"pool_idle_conns":        strconv.Itoa(int(st.IdleConns())),
		"pool_in_use":            strconv.Itoa(inUse),
		"pool_acquires":          strconv.FormatInt(st.AcquireCount(), 10),
		"pool_empty_acquires":    strconv.FormatInt(st.EmptyAcquireCount(), 10),
		"pool_canceled_acquires": strconv.FormatInt(st.CanceledAcquireCount(), 10),
		"pool_new_conns":         strconv.FormatInt(st.NewConnsCount(), 10),
	}
	if c.version != "" {
		details["server_version"] = c.version
	}
	saturated := inUse*10 >= c.opts.PoolSize*9
	switch {
	case pingErr != nil && saturated && !unreachable(pingErr):
		return sdk.Health{Status: sdk.Degraded, Details: details,
			Message: fmt.Sprintf("ping postgres %s: all %d pooled connections in use: %v", c.opts.Address, c.opts.PoolSize, pingErr)}
	case pingErr != nil:
		return sdk.Health{Status: sdk.Unhealthy, Details: details,
			Message: fmt.Sprintf("ping postgres %s: %v", c.opts.Address, pingErr)}
	case saturated:
		return sdk.Health{Status: sdk.Degraded, Details: details,
			Message: fmt.Sprintf("%d of %d pooled connections in use", inUse, c.opts.PoolSize)}
	}
	return sdk.Health{Status: sdk.Healthy, Details: details}
}

// Close implements sdk.Driver: it stops the sweeper and closes the pool.
// Calling it again, or before Init, does nothing.
func (d *Driver) Close(context.Context) error {
	d.mu.Lock()
	stop := d.stopSweep
	d.stopSweep = nil
	c := d.cur.Swap(nil)
	d.mu.Unlock()
	if stop != nil {
		stop()
		d.swept.Wait()
	}
	if c != nil {
		c.closeNow()
	}
	return nil
}

// sweep deletes expired rows every interval, to reclaim space only: reads
// never return an expired row, swept or not.
func (d *Driver) sweep(ctx context.Context, interval time.Duration) {
	defer d.swept.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c, err := d.conn("sweep")
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, interval)
		// In bounded chunks, so one sweep never holds many row locks.
		for sctx.Err() == nil {
			tag, err := c.pool.Exec(sctx, "DELETE FROM "+c.table+" WHERE k IN (SELECT k FROM "+c.table+
				" WHERE expires_at <= clock_timestamp() LIMIT 1000 FOR UPDATE SKIP LOCKED)")
			if err != nil || tag.RowsAffected() < 1000 {
				break
			}
		}
		cancel()
		c.release()
	}
}

// conn returns the current pool for one call, or an error naming op before
// Init or after Close. The caller must call release when the call is done.
func (d *Driver) conn(op string) (*conn, error) {
	for {
		c := d.cur.Load()
		if c == nil {
			return nil, fmt.Errorf("%s: postgres plugin is not initialized or is closed: %w", op, sdk.ErrUnavailable)
		}
		if c.acquire() {
			return c, nil
		}
	}
}

func (c *conn) acquire() bool {
	c.calls.Add(1)
	if !c.retired.Load() {
		return true
	}
	c.release()
	return false
}

func (c *conn) release() {
	if c.calls.Add(-1) == 0 && c.retired.Load() {
		c.idleOnce.Do(func() { close(c.idle) })
		go c.closeNow()
	}
}

// retire marks c as replaced: no new call starts on it, and its pool
// closes once the calls on it are done.
func (c *conn) retire() {
	c.retired.Store(true)
	if c.calls.Load() == 0 {
		c.idleOnce.Do(func() { close(c.idle) })
		go c.closeNow()
	}
}

func (c *conn) closeNow() { c.closeOnce.Do(c.pool.Close) }

// AuthenticatesWithCredentials implements sdk.BackendCredentials: the
// driver authenticates with the credentials username and password only.
func (d *Driver) AuthenticatesWithCredentials() {}

// RotateCredentials implements sdk.CredentialRotator (auth.rotation): a new
// pool with the new credentials and the current options is checked (a
// connection, the server version, the table) and swapped in; new calls use
// it at once, calls in flight finish on the old pool, which closes once the
// last of them is done. It returns then (or when ctx ends), so the caller
// may revoke the old credentials. On any error the old pool stays in use.
func (d *Driver) RotateCredentials(ctx context.Context, credentials map[string]string) error {
	cred, err := parseCredentials(credentials)
	if err != nil {
		return err
	}
	cur := d.cur.Load()
	if cur == nil {
		return fmt.Errorf("rotate credentials: postgres plugin is not initialized or is closed: %w", sdk.ErrUnavailable)
	}
	c, err := connect(ctx, cur.opts, cred)
	if err != nil {
		return err
	}
	if err := c.prepareTable(ctx, cred); err != nil {
		c.closeNow()
		return err
	}
	d.mu.Lock()
	old := d.cur.Load()
	if old == nil {
		d.mu.Unlock()
		c.closeNow()
		return fmt.Errorf("rotate credentials: postgres plugin was closed meanwhile: %w", sdk.ErrUnavailable)
	}
	d.cur.Store(c)
	old.retire()
	d.mu.Unlock()
	select {
	case <-old.idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rotate credentials: the new credentials are in use, but calls on the old ones are still in flight: %w", ctx.Err())
	}
}
