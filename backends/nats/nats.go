// Package nats is Prism's NATS reference plugin, built on nats.go.
//
// # Capabilities
//
// It declares pubsub.basic, pubsub.ordered and pubsub.queue on core NATS,
// pubsub.durable on JetStream, and auth.backend-credentials and auth.rotation
// (rotate.go): [Driver] satisfies those interfaces and the SDK derives the
// declaration from that. It declares no KeyValue capability.
//
// # Topics and subjects
//
// NATS gives '.', '*' and '>' in subjects a meaning; Prism topics are
// literal. So a topic travels on the subject "<subject_prefix>.t.<token>",
// where the token is the topic's bytes in lower-case base32hex without
// padding: one subject token per topic, never a wildcard, never a prefix of
// another topic's subject. Queue groups are encoded the same way. Metadata
// travels as headers "Prism-Meta-<key>" (values percent-encoded where a NATS
// header could not carry them: '%', control characters, leading and trailing
// blanks), with "Prism-Id" and "Prism-Time" (RFC 3339, nanoseconds).
//
// # Delivery
//
// Publish goes through JetStream (a request that the server acknowledges), so
// it returns only once the server has the message, and messages of one
// publisher keep their order: sequential calls on one connection, and a
// PublishBatch of asynchronous publishes on that connection, awaited
// together. Core subscriptions (plain and queue) receive it at most once
// each; the stream keeps it only for the durable consumers of its topic
// (interest retention), so topics nobody consumes durably cost no storage.
//
// Payloads larger than the server's max_payload minus 32 KiB (the header
// budget) travel through the JetStream object store payload_bucket: the
// message carries the header "Prism-Claim" naming the object, and the
// subscriber's plugin fetches it before delivery. Objects expire after
// stream_max_age.
//
// Durable consumers are JetStream pull consumers of the stream, one per
// (topic, durable name), named from a hash of both; explicit ack, ack_wait
// from the subscription or the config, redelivered forever, max_ack_pending
// unacknowledged at most. A new consumer starts with the messages published
// after its creation. The ack token is the JetStream ack subject of the
// delivery: Ack sends "+ACK" to it as a request and waits for the server's
// reply, so an acknowledged message is never redelivered, even to another
// plugin instance or after a restart.
//
// # Config
//
// The Initialize config document accepts these fields; any other field, or a
// value of the wrong type, is InvalidArgument naming it.
//
//	url                string, required  nats://host:port (tls:// for TLS), or several, comma-separated
//	name               string            client connection name (default "prism-nats")
//	subject_prefix     string            subject prefix, tokens of [A-Za-z0-9_-] (default "prism")
//	stream             string            JetStream stream for durable consumers (default "PRISM")
//	stream_max_age     duration          how long the stream keeps messages (default "24h")
//	stream_max_bytes   integer           bytes the stream keeps, oldest dropped first (default 1 GiB)
//	stream_replicas    integer 1..5      stream replicas (default 1)
//	payload_bucket     string            object store for large payloads (default "PRISM_PAYLOADS")
//	ack_wait           duration          default ack deadline of durable subscriptions (default "30s")
//	max_ack_pending    integer           unacknowledged deliveries per durable consumer (default 1000)
//	connect_timeout    duration          one connection attempt (default "2s")
//	request_timeout    duration          JetStream calls, publish acks, payload fetches (default "5s")
//	reconnect_wait     duration          first reconnect delay, doubling... (default "100ms")
//	reconnect_wait_max duration          ...up to this (default "2s"); reconnects never stop
//	max_topic_bytes    integer 16..1024  longest topic (default 256)
//	max_payload_bytes  integer           largest payload, at most 32 MiB (default 1 MiB)
//	buffer_messages    integer           per-subscription buffer in messages (default 1024)
//	buffer_bytes       integer           per-subscription buffer in bytes (default 8 MiB)
//
// The Initialize credentials accept "user" and "password", or "token". They
// never appear in errors, logs or Health; a URL with user info is shown
// redacted. RotateCredentials (the lifecycle call) replaces them at run time
// without dropping a call: a new connection with the new credentials takes
// the new calls, the old one closes once its calls are done (subscriptions
// keep it until they end, and it reconnects with the new credentials).
//
// Namespaces sharing a server each get a subject_prefix, stream and
// payload_bucket of their own, and a user with exactly the permissions
// [PermissionsFor] lists, so that one namespace's plugin cannot touch
// another's subjects, stream or objects (replies come to inboxes under
// "_INBOX.<subject_prefix>.").
//
// # Behaviour
//
// Init connects within connect_timeout (Unavailable when the server cannot be
// reached, Unauthenticated when it rejects the credentials), requires
// JetStream (FailedPrecondition without it), and creates or updates the
// stream and the object store. After that the client reconnects forever, with
// a delay doubling from reconnect_wait to reconnect_wait_max, and restores
// its subscriptions by itself: a subscription survives a server restart,
// though core messages published while the server was down are lost (core
// NATS is at most once), and publishing fails with Unavailable while the
// connection is down (no client-side buffering). Health is the connection's
// state: HEALTHY when connected, UNHEALTHY while reconnecting.
//
// The slow-consumer policy is drop-oldest with buffer_messages and
// buffer_bytes per subscription: the plugin's NATS callbacks never block, so
// the NATS client never becomes a slow consumer of the server.
package nats

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/sdk"
)

// Version is the plugin's version.
const Version = "0.1.0"

// headerBudget is what the plugin keeps free for headers in a NATS message:
// larger payloads travel through the object store.
const headerBudget = 32 << 10

// Driver is the NATS driver. It is safe for concurrent use.
type Driver struct {
	mu  sync.Mutex // orders Configure's swap with Close
	cur atomic.Pointer[conn]
}

// conn is one configured connection; Init and RotateCredentials replace it
// whole (rotate.go retires the old one once its calls are done).
type conn struct {
	nc      *gonats.Conn
	js      jetstream.JetStream
	opts    Options
	objects jetstream.ObjectStore
	subs    atomic.Int64 // live subscriptions, for Health
	life    connLife
}

var (
	_ sdk.Driver        = (*Driver)(nil)
	_ sdk.PubSubBasic   = (*Driver)(nil)
	_ sdk.PubSubOrdered = (*Driver)(nil)
	_ sdk.PubSubQueue   = (*Driver)(nil)
	_ sdk.PubSubDurable = (*Driver)(nil)
	_ sdk.PubSubPolicy  = (*Driver)(nil)
)

// New returns a Driver; Init connects it.
func New() *Driver { return &Driver{} }

// Describe implements sdk.Driver; it does not touch the server.
func (d *Driver) Describe() sdk.Description {
	info := map[string]string{"backend": "nats"}
	if c := d.cur.Load(); c != nil {
		if v := c.nc.ConnectedServerVersion(); v != "" {
			info["server_version"] = v
		}
		info["stream"] = c.opts.Stream
		info["stream_replicas"] = strconv.Itoa(c.opts.StreamReplicas)
		// The servers the client knows: those of the url and those the
		// cluster announced.
		if n := len(c.nc.Servers()); n > 1 {
			info["cluster_servers"] = strconv.Itoa(n)
		}
	}
	return sdk.Description{Name: "nats", Version: Version, Info: info}
}

// options returns the current options, or the defaults before Init.
func (d *Driver) options() Options {
	if c := d.cur.Load(); c != nil {
		return c.opts
	}
	return DefaultOptions()
}

// Limits implements sdk.Driver.
func (d *Driver) Limits() sdk.Limits {
	o := d.options()
	return sdk.Limits{MaxTopicBytes: o.MaxTopicBytes, MaxPayloadBytes: o.MaxPayloadBytes}
}

// SlowConsumer implements sdk.PubSubPolicy: drop oldest.
func (d *Driver) SlowConsumer() sdk.SlowConsumerPolicy {
	o := d.options()
	return sdk.SlowConsumerPolicy{Mode: sdk.DropOldest, BufferMessages: o.BufferMessages, BufferBytes: o.BufferBytes}
}

// OrderedPerPublisher implements sdk.PubSubOrdered.
func (d *Driver) OrderedPerPublisher() {}

// Init implements sdk.Driver: it reads the config and credentials described
// in the package doc, then calls [Driver.Configure].
func (d *Driver) Init(ctx context.Context, cfg sdk.Config) error {
	o, cred, err := parseConfig(cfg)
	if err != nil {
		return err
	}
	return d.Configure(ctx, o, cred)
}

// Configure connects with o and cred (for in-process use; Init calls it after
// parsing the config), checks JetStream and sets up the stream and the object
// store. On success it replaces and closes the previous connection, if any;
// on failure the previous one stays.
func (d *Driver) Configure(ctx context.Context, o Options, cred Credentials) error {
	if err := o.validate(); err != nil {
		return err
	}
	c, err := connect(ctx, o, cred, true)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old := d.cur.Swap(c); old != nil {
		old.retire(nil)
	}
	return nil
}

// connect connects with o and cred and sets up JetStream: with create, it
// creates or updates the stream and the object store; without, it binds to
// the object store (rotation).
func connect(ctx context.Context, o Options, cred Credentials, create bool) (*conn, error) {
	c := &conn{opts: o}
	c.life.init(cred)
	nopts := []gonats.Option{
		gonats.Name(o.Name),
		gonats.Timeout(o.ConnectTimeout),
		gonats.MaxReconnects(-1),
		gonats.CustomReconnectDelay(backoff(o.ReconnectWait, o.ReconnectWaitMax)),
		// Publishing while disconnected fails now instead of being buffered
		// and possibly lost.
		gonats.ReconnectBufSize(-1),
		// Keep trying after the server rejected us (credentials may be fixed
		// on the server side).
		gonats.IgnoreAuthErrorAbort(),
		gonats.PingInterval(5 * time.Second),
		gonats.MaxPingsOutstanding(2),
		// Replies under the subject prefix, so permissions can confine them
		// (see PermissionsFor).
		gonats.CustomInboxPrefix(inboxPrefix(o)),
	}
	if !hasUserInfo(o.URL) {
		// Asked at every (re)connect, so rotation can change them.
		nopts = append(nopts, gonats.UserInfoHandler(c.life.userInfo), gonats.TokenHandler(c.life.token))
	}
	where := redactURL(o.URL)
	type result struct {
		nc  *gonats.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		nc, err := gonats.Connect(o.URL, nopts...)
		ch <- result{nc, err}
	}()
	var nc *gonats.Conn
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, connectError(where, cred, r.err)
		}
		nc = r.nc
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("connect to nats %s: %w", where, ctx.Err())
	}
	c.nc = nc
	setup := c.setup
	if !create {
		setup = c.bind
	}
	if err := setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// setup checks JetStream and creates or updates the stream and object store.
func (c *conn) setup(ctx context.Context) error {
	js, err := jetstream.New(c.nc, jetstream.WithDefaultTimeout(c.opts.RequestTimeout))
	if err != nil {
		return fmt.Errorf("set up jetstream: %w", err)
	}
	c.js = js
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return status.Errorf(codes.FailedPrecondition,
				"check jetstream: the NATS server has no JetStream for this account; pubsub.durable needs it (run nats-server -js): %v", err)
		}
		return wrap(ctx, "check jetstream", err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.opts.Stream,
		Description: "Prism PubSub: messages kept for durable consumers",
		Subjects:    []string{c.opts.SubjectPrefix + ".t.>"},
		Retention:   jetstream.InterestPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.opts.StreamMaxAge,
		MaxBytes:    c.opts.StreamMaxBytes,
		Replicas:    c.opts.StreamReplicas,
	})
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code == 400 {
			return sdk.InvalidConfig("stream", "JetStream refused to create or update stream %q: %v", c.opts.Stream, err)
		}
		return wrap(ctx, fmt.Sprintf("create stream %q", c.opts.Stream), err)
	}
	c.objects, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      c.opts.PayloadBucket,
		Description: "Prism PubSub: payloads too large for one NATS message",
		TTL:         c.opts.StreamMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    c.opts.StreamReplicas,
	})
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code == 400 {
			return sdk.InvalidConfig("payload_bucket", "JetStream refused to create or update object store %q: %v", c.opts.PayloadBucket, err)
		}
		return wrap(ctx, fmt.Sprintf("create object store %q", c.opts.PayloadBucket), err)
	}
	return nil
}

// bound returns ctx limited by the request timeout.
func (c *conn) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opts.RequestTimeout)
}

// backoff returns the reconnect delay: first doubling from first to most,
// with up to 20% jitter.
func backoff(first, most time.Duration) gonats.ReconnectDelayHandler {
	return func(attempts int) time.Duration {
		d := first
		for i := 1; i < attempts && d < most; i++ {
			d *= 2
		}
		d = min(d, most)
		return d - time.Duration(rand.Int64N(int64(d)/5+1))
	}
}

// Health implements sdk.Driver: the connection's state.
func (d *Driver) Health(context.Context) sdk.Health {
	c, err := d.conn("check health")
	if err != nil {
		return sdk.Health{Status: sdk.Unhealthy, Message: "not initialized"}
	}
	defer c.release()
	st := c.nc.Stats()
	details := map[string]string{
		"status":        c.nc.Status().String(),
		"reconnects":    strconv.FormatUint(st.Reconnects, 10),
		"subscriptions": strconv.FormatInt(c.subs.Load(), 10),
		"stream":        c.opts.Stream,
	}
	if v := c.nc.ConnectedServerVersion(); v != "" {
		details["server_version"] = v
	}
	if u := c.nc.ConnectedUrlRedacted(); u != "" {
		details["server"] = u
	}
	switch c.nc.Status() {
	case gonats.CONNECTED:
		return sdk.Health{Status: sdk.Healthy, Details: details}
	case gonats.RECONNECTING, gonats.DISCONNECTED, gonats.CONNECTING:
		msg := "reconnecting to nats " + redactURL(c.opts.URL)
		if err := c.nc.LastError(); err != nil {
			msg += ": " + err.Error()
		}
		return sdk.Health{Status: sdk.Unhealthy, Message: msg, Details: details}
	}
	return sdk.Health{Status: sdk.Unhealthy, Message: "connection is " + c.nc.Status().String(), Details: details}
}

// Close implements sdk.Driver: it closes the connection. Calling it again, or
// before Init, does nothing.
func (d *Driver) Close(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.cur.Swap(nil); c != nil {
		c.closeNow()
	}
	return nil
}

// conn returns the current connection for one call, or an error naming op
// before Init or after Close. The caller must call release when the call is
// done: a connection replaced by RotateCredentials is closed only once every
// call on it has released it.
func (d *Driver) conn(op string) (*conn, error) {
	for {
		c := d.cur.Load()
		if c == nil {
			return nil, fmt.Errorf("%s: nats plugin is not initialized or is closed: %w", op, sdk.ErrUnavailable)
		}
		if c.acquire() {
			return c, nil
		}
		// c was retired between the load and acquire: d.cur is its successor.
	}
}

// connectError explains why Init could not connect; never with a secret.
func connectError(where string, cred Credentials, err error) error {
	msg := err.Error()
	for _, secret := range []string{cred.Password, cred.Token} {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "[redacted]")
		}
	}
	switch {
	case errors.Is(err, gonats.ErrAuthorization), errors.Is(err, gonats.ErrAuthExpired), errors.Is(err, gonats.ErrAuthRevoked),
		strings.Contains(strings.ToLower(msg), "authorization violation"):
		return fmt.Errorf("authenticate to nats %s: the server rejected the credentials (%s): %w", where, cred, sdk.ErrUnauthenticated)
	}
	return fmt.Errorf("connect to nats %s: %s: %w", where, msg, sdk.ErrUnavailable)
}

// wrap turns a nats.go error into one the SDK maps to the right code; op is
// the "verb noun" the message starts with.
func wrap(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", op, cerr)
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrConsumerDeleted),
		errors.Is(err, jetstream.ErrObjectNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("%s: %w: %w", op, sdk.ErrNotFound, err)
	case errors.Is(err, gonats.ErrAuthorization), errors.Is(err, gonats.ErrAuthExpired), errors.Is(err, gonats.ErrAuthRevoked):
		return fmt.Errorf("%s: nats no longer accepts this plugin's credentials: %w", op, sdk.ErrUnauthenticated)
	case errors.Is(err, gonats.ErrPermissionViolation):
		return status.Errorf(codes.PermissionDenied, "%s: %v", op, err)
	case errors.Is(err, jetstream.ErrMaximumConsumersLimit), errors.Is(err, gonats.ErrMaxSubscriptionsExceeded):
		return fmt.Errorf("%s: %w: %w", op, sdk.ErrFull, err)
	case errors.Is(err, gonats.ErrConnectionClosed), errors.Is(err, gonats.ErrConnectionReconnecting),
		errors.Is(err, gonats.ErrConnectionDraining), errors.Is(err, gonats.ErrNoServers), errors.Is(err, gonats.ErrTimeout),
		errors.Is(err, gonats.ErrNoResponders), errors.Is(err, gonats.ErrDisconnected), errors.Is(err, gonats.ErrStaleConnection),
		errors.Is(err, gonats.ErrReconnectBufExceeded),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrConnectionClosed),
		errors.Is(err, jetstream.ErrServerShutdown), errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.As(err, &apiErr) && apiErr.Code == 503:
		return fmt.Errorf("%s: %w: %w", op, sdk.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
