package nats

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
	"sync"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/tracing"
)

// Headers the plugin sets on every message.
const (
	hdrID    = "Prism-Id"
	hdrTime  = "Prism-Time"
	hdrClaim = "Prism-Claim"
	hdrMeta  = "Prism-Meta-"
)

// b32 encodes topics and queue groups as one subject token each.
var b32 = base32.HexEncoding.WithPadding(base32.NoPadding)

func token(s string) string { return strings.ToLower(b32.EncodeToString([]byte(s))) }

// subject returns the subject of topic.
func (c *conn) subject(topic string) string { return c.opts.SubjectPrefix + ".t." + token(topic) }

// queueName returns the NATS queue group name of a Prism queue group.
func queueName(group string) string { return "q" + token(group) }

// maxInline is the largest payload sent inside a NATS message.
func (c *conn) maxInline() int {
	return int(max(c.nc.MaxPayload()-headerBudget, 1024))
}

// escapeValue makes a metadata value safe for a NATS header: '%', control
// characters and blanks at either end are percent-encoded.
func escapeValue(v string) string {
	need := false
	for i := 0; i < len(v); i++ {
		if b := v[i]; b == '%' || b < 0x20 || b == 0x7f || ((i == 0 || i == len(v)-1) && b == ' ') {
			need = true
			break
		}
	}
	if !need {
		return v
	}
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b == '%' || b < 0x20 || b == 0x7f || ((i == 0 || i == len(v)-1) && b == ' ') {
			fmt.Fprintf(&sb, "%%%02X", b)
		} else {
			sb.WriteByte(b)
		}
	}
	return sb.String()
}

func unescapeValue(v string) string {
	if !strings.Contains(v, "%") {
		return v
	}
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]) {
			sb.WriteByte(unhex(v[i+1])<<4 | unhex(v[i+2]))
			i += 2
			continue
		}
		sb.WriteByte(v[i])
	}
	return sb.String()
}

func isHex(b byte) bool { return b >= '0' && b <= '9' || b >= 'A' && b <= 'F' || b >= 'a' && b <= 'f' }

func unhex(b byte) byte {
	switch {
	case b >= '0' && b <= '9':
		return b - '0'
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10
	}
	return b - 'A' + 10
}

// outgoing builds the NATS message for m, storing a large payload in the
// object store first. It returns the message and its id.
func (c *conn) outgoing(ctx context.Context, m sdk.Message) (*gonats.Msg, string, error) {
	id := nuid.Next()
	msg := gonats.NewMsg(c.subject(m.Topic))
	msg.Header.Set(hdrID, id)
	msg.Header.Set(hdrTime, time.Now().UTC().Format(time.RFC3339Nano))
	for k, v := range m.Metadata {
		msg.Header.Set(hdrMeta+k, escapeValue(v))
	}
	if len(m.Payload) <= c.maxInline() {
		msg.Data = m.Payload
		return msg, id, nil
	}
	bctx, cancel := c.bound(ctx)
	defer cancel()
	chunk := uint32(min(128<<10, c.maxInline()))
	meta := jetstream.ObjectMeta{Name: id, Opts: &jetstream.ObjectMetaOptions{ChunkSize: chunk}}
	if _, err := c.objects.Put(bctx, meta, bytes.NewReader(m.Payload)); err != nil {
		return nil, "", wrap(ctx, fmt.Sprintf("store payload of %d bytes", len(m.Payload)), err)
	}
	msg.Header.Set(hdrClaim, id)
	return msg, id, nil
}

// incoming turns a NATS message of topic back into a Prism message,
// fetching a payload from the object store when the message carries a claim.
func (c *conn) incoming(topic string, h gonats.Header, data []byte) (sdk.Message, error) {
	m := sdk.Message{Topic: topic, ID: h.Get(hdrID), Payload: data}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(hdrTime)); err == nil {
		m.PublishTime = t
	}
	for k, vs := range h {
		if key, ok := strings.CutPrefix(k, hdrMeta); ok && len(vs) > 0 {
			if m.Metadata == nil {
				m.Metadata = map[string]string{}
			}
			m.Metadata[key] = unescapeValue(vs[0])
		}
	}
	if claim := h.Get(hdrClaim); claim != "" {
		ctx, cancel := c.bound(context.Background())
		defer cancel()
		p, err := c.objects.GetBytes(ctx, claim)
		if err != nil {
			return m, wrap(context.Background(), fmt.Sprintf("fetch payload %s of message %s", claim, m.ID), err)
		}
		m.Payload = p
	}
	if m.Payload == nil {
		m.Payload = []byte{}
	}
	return m, nil
}

// Publish implements sdk.PubSubBasic: a JetStream publish, acknowledged by
// the server.
func (d *Driver) Publish(ctx context.Context, m sdk.Message) (string, error) {
	ctx, sp := tracing.Child(ctx, "nats.Publish")
	defer sp.End()
	op := fmt.Sprintf("publish to %q", m.Topic)
	c, err := d.conn(op)
	if err != nil {
		return "", err
	}
	defer c.release()
	msg, id, err := c.outgoing(ctx, m)
	if err != nil {
		return "", err
	}
	bctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.js.PublishMsg(bctx, msg); err != nil {
		return "", wrap(ctx, op, err)
	}
	return id, nil
}

// PublishBatch implements sdk.PubSubBasic: asynchronous JetStream publishes
// on one connection (so in order), awaited together.
func (d *Driver) PublishBatch(ctx context.Context, msgs []sdk.Message) ([]string, error) {
	ctx, sp := tracing.Child(ctx, "nats.PublishBatch")
	defer sp.End()
	op := fmt.Sprintf("publish batch of %d", len(msgs))
	c, err := d.conn(op)
	if err != nil {
		return nil, err
	}
	defer c.release()
	ids := make([]string, len(msgs))
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for i, m := range msgs {
		msg, id, err := c.outgoing(ctx, m)
		if err != nil {
			return nil, err
		}
		f, err := c.js.PublishMsgAsync(msg)
		if err != nil {
			return nil, wrap(ctx, fmt.Sprintf("%s: message %d", op, i), err)
		}
		ids[i] = id
		futures = append(futures, f)
	}
	timeout := time.NewTimer(c.opts.RequestTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return nil, wrap(ctx, fmt.Sprintf("%s: message %d", op, i), err)
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		case <-timeout.C:
			return nil, fmt.Errorf("%s: no acknowledgement from JetStream within %v: %w", op, c.opts.RequestTimeout, sdk.ErrUnavailable)
		}
	}
	return ids, nil
}

// Subscribe implements sdk.PubSubBasic with a core subscription.
func (d *Driver) Subscribe(ctx context.Context, topic string, sink sdk.Sink) (sdk.Subscription, error) {
	return d.subscribeCore(ctx, topic, "", sink)
}

// SubscribeQueue implements sdk.PubSubQueue with a core queue subscription.
func (d *Driver) SubscribeQueue(ctx context.Context, topic, group string, sink sdk.Sink) (sdk.Subscription, error) {
	return d.subscribeCore(ctx, topic, group, sink)
}

func (d *Driver) subscribeCore(ctx context.Context, topic, group string, sink sdk.Sink) (sdk.Subscription, error) {
	ctx, sp := tracing.Child(ctx, "nats.Subscribe")
	defer sp.End()
	op := fmt.Sprintf("subscribe to %q", topic)
	c, err := d.conn(op)
	if err != nil {
		return nil, err
	}
	defer c.release()
	if st := c.nc.Status(); st != gonats.CONNECTED {
		// As Publish: a new subscription is refused while the connection is
		// down (an existing one is restored on reconnect), not left to hang
		// until the caller's deadline.
		return nil, fmt.Errorf("%s: the nats connection is %s: %w", op, st, sdk.ErrUnavailable)
	}
	cb := func(msg *gonats.Msg) {
		m, err := c.incoming(topic, msg.Header, msg.Data)
		if err != nil {
			sink.Fail(err)
			return
		}
		sink.Deliver(m)
	}
	var sub *gonats.Subscription
	if group == "" {
		sub, err = c.nc.Subscribe(c.subject(topic), cb)
	} else {
		sub, err = c.nc.QueueSubscribe(c.subject(topic), queueName(group), cb)
	}
	if err != nil {
		return nil, wrap(ctx, op, err)
	}
	// The subscription is live once the server has processed it.
	bctx, cancel := c.bound(ctx)
	defer cancel()
	if err := c.nc.FlushWithContext(bctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, wrap(ctx, op, err)
	}
	c.subs.Add(1)
	return &coreSub{c: c, sub: sub}, nil
}

// coreSub is a core NATS subscription.
type coreSub struct {
	c    *conn
	sub  *gonats.Subscription
	once sync.Once
}

// Unsubscribe implements sdk.Subscription.
func (s *coreSub) Unsubscribe() error {
	var err error
	s.once.Do(func() {
		s.c.subClosed()
		if e := s.sub.Unsubscribe(); e != nil && s.c.nc.Status() == gonats.CONNECTED {
			err = fmt.Errorf("unsubscribe: %w", e)
		}
	})
	return err
}

// consumerName returns the JetStream consumer of a durable of topic.
func (c *conn) consumerName(topic, durable string) string {
	sum := sha256.Sum256([]byte(c.opts.SubjectPrefix + "\x00" + topic + "\x00" + durable))
	return "prism-" + strings.ToLower(b32.EncodeToString(sum[:20]))
}
