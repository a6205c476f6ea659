package redis

// PubSub on Redis: PUBLISH and SUBSCRIBE (never PSUBSCRIBE, so topics are
// literal). A topic's channel is key_prefix + "pubsub:" + topic. The message
// on the channel is a prism.pubsub.v1.Message in protobuf encoding (topic,
// payload, metadata, id, publish time), so payloads and metadata are
// binary-safe.
//
// All subscriptions of a plugin share one Redis connection: the first
// subscription of a channel sends SUBSCRIBE and waits for Redis's
// confirmation before it counts as live; the last one to leave sends
// UNSUBSCRIBE. Subscribe and unsubscribe commands are serialised, so the
// server's view follows the plugin's. go-redis reconnects that connection by
// itself and subscribes its channels again; messages published while it was
// down are lost (Redis Pub/Sub is at most once).
//
// Declared: pubsub.basic and pubsub.ordered (sequential PUBLISHes, and a
// batch pipelined on one connection, reach the server in order and Redis
// delivers in that order). Not declared: pubsub.queue (Redis Pub/Sub has no
// consumer groups) and pubsub.durable (Pub/Sub keeps nothing). The
// slow-consumer policy is the SDK's default, drop-oldest.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prism-suite/prism/backends/sdk"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

var (
	_ sdk.PubSubBasic   = (*Driver)(nil)
	_ sdk.PubSubOrdered = (*Driver)(nil)
)

// idPrefix makes message ids unique across plugin processes.
var (
	idPrefix = func() string {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}()
	idSeq atomic.Uint64
)

func newID() string { return idPrefix + "-" + strconv.FormatUint(idSeq.Add(1), 36) }

// channel returns the Redis channel of topic.
func (c *conn) channel(topic string) string { return c.opts.KeyPrefix + "pubsub:" + topic }

// envelope encodes m for PUBLISH.
func envelope(m sdk.Message, id string, now time.Time) ([]byte, error) {
	b, err := proto.Marshal(&pubsubv1.Message{Topic: m.Topic, Payload: m.Payload, Metadata: m.Metadata, Id: id,
		PublishTime: timestamppb.New(now)})
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	return b, nil
}

// OrderedPerPublisher implements sdk.PubSubOrdered.
func (d *Driver) OrderedPerPublisher() {}

// Publish implements sdk.PubSubBasic with PUBLISH.
func (d *Driver) Publish(ctx context.Context, m sdk.Message) (string, error) {
	op := fmt.Sprintf("publish to %q", m.Topic)
	c, err := d.conn(op)
	if err != nil {
		return "", err
	}
	defer c.release()
	id := newID()
	b, err := envelope(m, id, time.Now())
	if err != nil {
		return "", err
	}
	pub, err := c.publisher(ctx, c.channel(m.Topic))
	if err != nil {
		return "", wrap(ctx, op, err)
	}
	if err := pub.Publish(ctx, c.channel(m.Topic), b).Err(); err != nil {
		return "", wrap(ctx, op, err)
	}
	return id, nil
}

// publisher is where a PUBLISH to channel goes. On a Redis Cluster a
// PUBLISH names no key, so the cluster client would send each to any node,
// and two messages of one publisher could reach a subscriber's node over
// different links, out of order: there every PUBLISH of a channel goes to
// the primary of the channel's slot (one node, one bus link to each other
// node).
func (c *conn) publisher(ctx context.Context, channel string) (goredis.Cmdable, error) {
	if cc, ok := c.client.(*goredis.ClusterClient); ok {
		return cc.MasterForKey(ctx, channel)
	}
	return c.client, nil
}

// PublishBatch implements sdk.PubSubBasic with PUBLISHes pipelined on one
// connection, in order.
func (d *Driver) PublishBatch(ctx context.Context, msgs []sdk.Message) ([]string, error) {
	op := fmt.Sprintf("publish batch of %d", len(msgs))
	c, err := d.conn(op)
	if err != nil {
		return nil, err
	}
	defer c.release()
	ids := make([]string, len(msgs))
	now := time.Now()
	if _, ok := c.client.(*goredis.ClusterClient); ok {
		// One PUBLISH at a time, each to its channel's primary (see
		// publisher), in order.
		for i, m := range msgs {
			ids[i] = newID()
			b, err := envelope(m, ids[i], now)
			if err != nil {
				return nil, err
			}
			pub, err := c.publisher(ctx, c.channel(m.Topic))
			if err == nil {
				err = pub.Publish(ctx, c.channel(m.Topic), b).Err()
			}
			if err != nil {
				return nil, wrap(ctx, op, err)
			}
		}
		return ids, nil
	}
	_, err = c.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, m := range msgs {
			ids[i] = newID()
			b, err := envelope(m, ids[i], now)
			if err != nil {
				return err
			}
			p.Publish(ctx, c.channel(m.Topic), b)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(ctx, op, err)
	}
	return ids, nil
}

// psHub multiplexes a conn's subscriptions over one Redis connection. The
// zero value is ready; the connection opens with the first subscription.
type psHub struct {
	cmd sync.Mutex // serialises SUBSCRIBE/UNSUBSCRIBE with the state they change

	mu       sync.Mutex
	ps       *goredis.PubSub
	channels map[string]*psChannel
	closed   bool
	// barriers are the subscriptions waiting to go live, by the name of
	// the throwaway channel whose SUBSCRIBE confirmation makes them live
	// (see Subscribe); barrierSeq names them.
	barriers   map[string]*redisSub
	barrierSeq uint64
}

// psChannel is one subscribed channel and its local subscriptions.
type psChannel struct {
	subs      map[*redisSub]struct{}
	confirmed chan struct{} // closed when Redis confirmed SUBSCRIBE
	once      sync.Once
}

// redisSub is one subscription.
type redisSub struct {
	c       *conn
	channel string
	topic   string
	sink    sdk.Sink
	once    sync.Once
	// live is closed, and active set (under psHub.mu), when messages
	// begin to reach the subscription: only those Redis sent after it was
	// asked for.
	live   chan struct{}
	active bool
}

// start opens the shared connection and its reader; callers hold h.mu.
func (h *psHub) startLocked(c *conn) {
	if h.ps != nil {
		return
	}
	h.channels = map[string]*psChannel{}
	h.barriers = map[string]*redisSub{}
	h.ps = c.client.Subscribe(context.Background())
	ch := h.ps.ChannelWithSubscriptions(goredis.WithChannelSize(1024), goredis.WithChannelSendTimeout(time.Second))
	go h.read(ch)
}

// read dispatches what the shared connection receives.
func (h *psHub) read(ch <-chan any) {
	for v := range ch {
		switch m := v.(type) {
		case *goredis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			h.mu.Lock()
			if pc := h.channels[m.Channel]; pc != nil {
				pc.once.Do(func() { close(pc.confirmed) })
			}
			if s := h.barriers[m.Channel]; s != nil {
				delete(h.barriers, m.Channel)
				s.active = true
				close(s.live)
			}
			h.mu.Unlock()
		case *goredis.Message:
			h.mu.Lock()
			pc := h.channels[m.Channel]
			var subs []*redisSub
			if pc != nil {
				subs = make([]*redisSub, 0, len(pc.subs))
				for s := range pc.subs {
					if s.active {
						subs = append(subs, s)
					}
				}
			}
			h.mu.Unlock()
			if len(subs) == 0 {
				continue
			}
			var pm pubsubv1.Message
			if err := proto.Unmarshal([]byte(m.Payload), &pm); err != nil {
				continue // not a Prism message: another client published on our channel
			}
			msg := sdk.Message{Topic: subs[0].topic, Payload: pm.GetPayload(), Metadata: pm.GetMetadata(), ID: pm.GetId(),
				PublishTime: pm.GetPublishTime().AsTime()}
			if msg.Payload == nil {
				msg.Payload = []byte{}
			}
			for _, s := range subs {
				s.sink.Deliver(msg)
			}
		}
	}
	// The PubSub was closed: end what is still subscribed.
	h.mu.Lock()
	var left []*redisSub
	for _, pc := range h.channels {
		for s := range pc.subs {
			left = append(left, s)
		}
	}
	h.mu.Unlock()
	for _, s := range left {
		s.sink.Fail(fmt.Errorf("subscribe: the redis plugin closed its connection: %w", sdk.ErrUnavailable))
	}
}

// close closes the shared connection, ending every subscription.
func (h *psHub) close() {
	h.cmd.Lock()
	defer h.cmd.Unlock()
	h.mu.Lock()
	ps := h.ps
	h.closed = true
	h.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// Subscribe implements sdk.PubSubBasic with SUBSCRIBE on the shared
// connection; it returns once Redis has confirmed the channel.
func (d *Driver) Subscribe(ctx context.Context, topic string, sink sdk.Sink) (sdk.Subscription, error) {
	op := fmt.Sprintf("subscribe to %q", topic)
	c, err := d.conn(op)
	if err != nil {
		return nil, err
	}
	defer c.release()
	h := &c.ps
	s := &redisSub{c: c, channel: c.channel(topic), topic: topic, sink: sink, live: make(chan struct{})}

	h.cmd.Lock()
	defer h.cmd.Unlock()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("%s: the redis plugin is closed: %w", op, sdk.ErrUnavailable)
	}
	h.startLocked(c)
	pc := h.channels[s.channel]
	fresh := pc == nil
	if fresh {
		pc = &psChannel{subs: map[*redisSub]struct{}{}, confirmed: make(chan struct{})}
		h.channels[s.channel] = pc
	}
	pc.subs[s] = struct{}{}
	ps := h.ps
	h.mu.Unlock()

	fail := func(err error) (sdk.Subscription, error) {
		h.mu.Lock()
		delete(pc.subs, s)
		empty := len(pc.subs) == 0
		if empty {
			delete(h.channels, s.channel)
		}
		h.mu.Unlock()
		if empty {
			// Let go-redis forget the channel too, so a reconnect does not
			// subscribe it again.
			uctx, cancel := context.WithTimeout(context.Background(), c.opts.WriteTimeout)
			_ = ps.Unsubscribe(uctx, s.channel)
			cancel()
		}
		return nil, err
	}
	if fresh {
		if err := ps.Subscribe(ctx, s.channel); err != nil {
			return fail(wrap(ctx, op, err))
		}
	}
	select {
	case <-pc.confirmed:
	case <-ctx.Done():
		return fail(fmt.Errorf("%s: waiting for redis to confirm: %w", op, ctx.Err()))
	}
	// The channel may have been subscribed for others before, so the
	// shared connection may hold messages published before this
	// subscription was asked for, not yet dispatched. A barrier: SUBSCRIBE
	// to a throwaway channel (a name no topic maps to: topics have no NUL)
	// and go live when Redis confirms it. Redis answers in order, so every
	// message it sent before is behind us, and every one published after
	// this call began comes after.
	h.mu.Lock()
	h.barrierSeq++
	barrier := c.channel(fmt.Sprintf("\x00barrier\x00%d", h.barrierSeq))
	h.barriers[barrier] = s
	h.mu.Unlock()
	err = ps.Subscribe(ctx, barrier)
	if err == nil {
		select {
		case <-s.live:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	uctx, cancel := context.WithTimeout(context.Background(), c.opts.WriteTimeout)
	_ = ps.Unsubscribe(uctx, barrier)
	cancel()
	if err != nil {
		h.mu.Lock()
		delete(h.barriers, barrier)
		h.mu.Unlock()
		return fail(wrap(ctx, op, err))
	}
	c.subOpened() // keeps a retired client open until the subscription ends
	return s, nil
}

// Unsubscribe implements sdk.Subscription; the last subscription of a
// channel sends UNSUBSCRIBE.
func (s *redisSub) Unsubscribe() error {
	var err error
	s.once.Do(func() {
		defer s.c.subClosed()
		h := &s.c.ps
		h.cmd.Lock()
		defer h.cmd.Unlock()
		h.mu.Lock()
		pc := h.channels[s.channel]
		empty := false
		if pc != nil {
			delete(pc.subs, s)
			if empty = len(pc.subs) == 0; empty {
				delete(h.channels, s.channel)
			}
		}
		ps, closed := h.ps, h.closed
		h.mu.Unlock()
		if !empty || closed || ps == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.c.opts.WriteTimeout)
		defer cancel()
		if e := ps.Unsubscribe(ctx, s.channel); e != nil && !errors.Is(e, goredis.ErrClosed) {
			err = wrap(ctx, fmt.Sprintf("unsubscribe from %q", s.topic), e)
		}
	})
	return err
}
