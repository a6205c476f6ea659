package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/tracing"
)

// SubscribeDurable implements sdk.PubSubDurable with a JetStream pull
// consumer, created on first use.
func (d *Driver) SubscribeDurable(ctx context.Context, topic, durable string, ackWait time.Duration, sink sdk.Sink) (sdk.Subscription, error) {
	ctx, sp := tracing.Child(ctx, "nats.SubscribeDurable")
	defer sp.End()
	op := fmt.Sprintf("subscribe durable %q to %q", durable, topic)
	c, err := d.conn(op)
	if err != nil {
		return nil, err
	}
	defer c.release()
	if ackWait <= 0 {
		ackWait = c.opts.AckWait
	}
	bctx, cancel := c.bound(ctx)
	defer cancel()
	cons, err := c.js.CreateOrUpdateConsumer(bctx, c.opts.Stream, jetstream.ConsumerConfig{
		Durable:       c.consumerName(topic, durable),
		Description:   fmt.Sprintf("Prism durable %q of topic %q", durable, topic),
		FilterSubject: c.subject(topic),
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: c.opts.MaxAckPending,
		Metadata:      map[string]string{"prism_durable": durable},
	})
	if err != nil {
		return nil, wrap(ctx, op, err)
	}
	if err := consumerLeader(bctx, cons); err != nil {
		return nil, wrap(ctx, op, err)
	}
	handler := func(msg jetstream.Msg) {
		m, err := c.incoming(topic, msg.Headers(), msg.Data())
		if err != nil {
			// The payload could not be fetched now: let it come again.
			_ = msg.Nak()
			return
		}
		if meta, err := msg.Metadata(); err == nil {
			m.Attempt = int(meta.NumDelivered)
		}
		m.AckToken = msg.Reply()
		sink.Deliver(m)
	}
	onErr := func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrBadRequest) {
			sink.Fail(wrap(context.Background(), op, err))
		}
	}
	cc, err := cons.Consume(handler, jetstream.PullMaxMessages(min(256, c.opts.MaxAckPending)), jetstream.ConsumeErrHandler(onErr))
	if err != nil {
		return nil, wrap(ctx, op, err)
	}
	c.subs.Add(1)
	return &durableSub{c: c, cc: cc}, nil
}

// consumerLeader waits (within ctx) until a replicated consumer has a
// leader: a pull request sent before one is elected gets no answer, and the
// consumer would only notice after its missed heartbeats (tens of seconds),
// delivering nothing meanwhile. A consumer of one replica has no cluster
// info and returns at once.
func consumerLeader(ctx context.Context, cons jetstream.Consumer) error {
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consumer %s has no leader yet: %w", info.Name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// durableSub is a running JetStream consumer.
type durableSub struct {
	c    *conn
	cc   jetstream.ConsumeContext
	once sync.Once
}

// Unsubscribe implements sdk.Subscription. Messages pulled but not yet
// delivered come again after the ack deadline.
func (s *durableSub) Unsubscribe() error {
	s.once.Do(func() {
		s.c.subClosed()
		s.cc.Stop()
	})
	return nil
}

// Ack implements sdk.PubSubDurable: each token is the delivery's JetStream
// ack subject; "+ACK" is sent to it as a request, so the server has
// processed the acknowledgement when Ack returns.
func (d *Driver) Ack(ctx context.Context, topic, durable string, tokens []string) error {
	ctx, sp := tracing.Child(ctx, "nats.Ack")
	defer sp.End()
	op := fmt.Sprintf("ack %d messages of durable %q of %q", len(tokens), durable, topic)
	c, err := d.conn(op)
	if err != nil {
		return err
	}
	defer c.release()
	name := c.consumerName(topic, durable)
	bctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.js.Consumer(bctx, c.opts.Stream, name); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("%s: no such durable consumer: %w", op, sdk.ErrNotFound)
		}
		return wrap(ctx, op, err)
	}
	for i, t := range tokens {
		stream, consumer, ok := parseAckSubject(t)
		if !ok || stream != c.opts.Stream || consumer != name {
			return status.Errorf(codes.InvalidArgument, "ack_tokens[%d]: not a token of durable consumer %q of this topic", i, durable)
		}
	}
	// Send every ack, then wait for every reply.
	replies := make([]*gonats.Msg, 0, len(tokens))
	inbox := c.nc.NewInbox() // under the inbox prefix the permissions allow
	ch := make(chan *gonats.Msg, len(tokens))
	sub, err := c.nc.ChanSubscribe(inbox+".*", ch)
	if err != nil {
		return wrap(ctx, op, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for i, t := range tokens {
		if err := c.nc.PublishRequest(t, fmt.Sprintf("%s.%d", inbox, i), []byte("+ACK")); err != nil {
			return wrap(ctx, op, err)
		}
	}
	for len(replies) < len(tokens) {
		select {
		case m := <-ch:
			if m.Header.Get("Status") == "503" {
				return fmt.Errorf("%s: the consumer is gone: %w", op, sdk.ErrNotFound)
			}
			replies = append(replies, m)
		case <-bctx.Done():
			return wrap(ctx, op, fmt.Errorf("%d of %d acknowledgements confirmed: %w", len(replies), len(tokens), gonats.ErrTimeout))
		}
	}
	return nil
}

// parseAckSubject returns the stream and consumer of a JetStream ack subject
// ($JS.ACK.<stream>.<consumer>.… or, with domain and account,
// $JS.ACK.<domain>.<account>.<stream>.<consumer>.…).
func parseAckSubject(s string) (stream, consumer string, ok bool) {
	t := strings.Split(s, ".")
	if len(t) < 9 || t[0] != "$JS" || t[1] != "ACK" {
		return "", "", false
	}
	if len(t) == 9 {
		return t[2], t[3], true
	}
	if len(t) >= 11 {
		return t[4], t[5], true
	}
	return "", "", false
}

// DeleteDurable implements sdk.PubSubDurable.
func (d *Driver) DeleteDurable(ctx context.Context, topic, durable string) error {
	ctx, sp := tracing.Child(ctx, "nats.DeleteDurable")
	defer sp.End()
	op := fmt.Sprintf("delete durable %q of %q", durable, topic)
	c, err := d.conn(op)
	if err != nil {
		return err
	}
	defer c.release()
	bctx, cancel := c.bound(ctx)
	defer cancel()
	if err := c.js.DeleteConsumer(bctx, c.opts.Stream, c.consumerName(topic, durable)); err != nil {
		return wrap(ctx, op, err)
	}
	return nil
}
