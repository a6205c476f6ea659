package registry

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// inboxEvent is a message (or the end) of one of a Receive stream's
// subscriptions; gen tells durable subscriptions apart when one is reopened.
type inboxEvent struct {
	msg     *pubsubv1.Message
	durable bool
	gen     int
	err     error
}

// pendingAck is an at-least-once message the receiver has not acknowledged.
type pendingAck struct {
	token, multicast string
	deadline         time.Time
}

// Receive implements prism.registry.v1.Registry/Receive. The first request
// must open the inbox of a registered identity (else InvalidArgument or
// NotFound). The coordinator subscribes to the identity's at-most-once
// inbox — and to its durable inbox when it has one, or as soon as an
// at-least-once multicast rings — writes the presence key that makes the
// stream a live receiver, and only then sends Subscribed. Later requests
// acknowledge at-least-once messages by message_id (acknowledging anything
// else is a no-op). A message for another identity is dropped; an
// at-least-once message whose multicast is over is acknowledged and
// dropped. The stream ends when the client cancels it or the messaging slot
// ends the at-most-once subscription (Unavailable); half-closing the
// requests changes nothing.
func (c *Coordinator) Receive(stream registryv1.Registry_ReceiveServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return status.Error(codes.InvalidArgument, "open: the first request must open an inbox")
	}
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return status.Error(codes.InvalidArgument, "open: the first request must open an inbox")
	}
	id := open.GetIdentity()
	if err := validateIdentity("open.identity", id); err != nil {
		return err
	}
	rs, err := c.registrySlot(ctx)
	if err != nil {
		return err
	}
	rec, err := c.get(rs, c.recordKey(id))
	if err != nil {
		return err
	}
	if rec == nil || !(live(rec, c.now()) || c.has(mutantExpiredReceiveOpens)) {
		return status.Errorf(codes.NotFound, "identity %q is not registered in namespace %q", id, c.ns)
	}
	ms, err := c.messagingSlot(ctx)
	if err != nil {
		return err
	}
	if err := c.ensureControl(ctx); err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ms.ctx)
	defer cancel()
	events := make(chan inboxEvent)
	read := func(rctx context.Context, s pubsubv1.PubSub_SubscribeClient, durable bool, gen int) {
		for {
			ev, err := s.Recv()
			if err != nil {
				select {
				case events <- inboxEvent{err: err, durable: durable, gen: gen}:
				case <-rctx.Done():
				}
				return
			}
			if ev.GetDropped() != nil {
				c.log.Warn("the messaging slot dropped inbox messages of a slow receiver", "identity", id, "count", ev.GetDropped().GetCount())
			}
			if m := ev.GetMessage(); m != nil {
				select {
				case events <- inboxEvent{msg: m, durable: durable, gen: gen}:
				case <-rctx.Done():
					return
				}
			}
		}
	}
	maxTopic := ms.maxTopic()
	amo, err := subscribe(ctx, sctx, ms.ps, &pubsubv1.Subscription{Topic: c.inboxTopic(id, false, maxTopic)})
	if err != nil {
		return slotError("messaging", "subscribe to the inbox", err)
	}

	durableTopic := c.inboxTopic(id, true, maxTopic)
	var durableCancel context.CancelFunc
	gen := 0
	openDurable := func() error {
		dctx, dcancel := context.WithCancel(sctx)
		s, err := subscribe(ctx, dctx, ms.ps, &pubsubv1.Subscription{Topic: durableTopic, Durable: durableName,
			AckWait: durationpb.New(c.cfg.AckWait)})
		if err != nil {
			dcancel()
			return slotError("messaging", "subscribe to the durable inbox", err)
		}
		gen++
		durableCancel = dcancel
		go read(dctx, s, true, gen)
		return nil
	}
	if ms.durable() {
		r, err := rs.kv.Exists(rs.ctx, &keyvaluev1.ExistsRequest{Key: c.durableKey(id)})
		if err != nil {
			return slotError("registry", "look up the durable inbox", err)
		}
		if r.GetExists() {
			if err := openDurable(); err != nil {
				return err
			}
		}
	}
	key, err := c.addReceiver(rs, id)
	if err != nil {
		return err
	}
	defer c.removeReceiver(key)
	if err := stream.Send(&registryv1.ReceiveResponse{Event: &registryv1.ReceiveResponse_Subscribed_{
		Subscribed: &registryv1.ReceiveResponse_Subscribed{Identity: id}}}); err != nil {
		return err
	}

	// Until the identity has a durable inbox this goroutine alone reads the
	// at-most-once inbox and forwards it: most receivers never need more, and
	// 10 000 receivers are 10 000 goroutines fewer.
	for durableCancel == nil {
		ev, err := amo.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return status.Errorf(codes.Unavailable, "messaging slot: the inbox subscription ended: %s", status.Convert(err).Message())
		}
		m := ev.GetMessage()
		if m == nil {
			if ev.GetDropped() != nil {
				c.log.Warn("the messaging slot dropped inbox messages of a slow receiver", "identity", id, "count", ev.GetDropped().GetCount())
			}
			continue
		}
		if m.GetMetadata()[mdKind] == kindDoorbell {
			if ms.durable() {
				if err := openDurable(); err != nil {
					c.log.Warn("open the durable inbox", "identity", id, "error", err.Error())
				}
			}
			continue
		}
		if out, keep := c.inboxMessage(ms, id, durableTopic, inboxEvent{msg: m}, nil); keep {
			if err := stream.Send(&registryv1.ReceiveResponse{Event: &registryv1.ReceiveResponse_Message{Message: out}}); err != nil {
				return err
			}
		}
	}
	go read(sctx, amo, false, 0)
	acks := make(chan string)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				return // EOF: half-close changes nothing; else the context ends
			}
			if a := req.GetAck(); a != nil {
				select {
				case acks <- a.GetMessageId():
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	pending := map[string]pendingAck{}
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case ev := <-events:
			switch {
			case ev.err != nil && !ev.durable:
				return status.Errorf(codes.Unavailable, "messaging slot: the inbox subscription ended: %s", status.Convert(ev.err).Message())
			case ev.err != nil:
				// The durable inbox ended (deleted by Unregister, or the
				// slot restarted): go on without it until a doorbell.
				if ev.gen == gen && durableCancel != nil {
					durableCancel()
					durableCancel = nil
				}
				c.log.Info("durable inbox subscription ended", "identity", id, "error", status.Convert(ev.err).Message())
				continue
			case !ev.durable && ev.msg.GetMetadata()[mdKind] == kindDoorbell:
				if durableCancel == nil && ms.durable() {
					if err := openDurable(); err != nil {
						c.log.Warn("open the durable inbox", "identity", id, "error", err.Error())
					}
				}
				continue
			}
			out, keep := c.inboxMessage(ms, id, durableTopic, ev, pending)
			if !keep {
				continue
			}
			if err := stream.Send(&registryv1.ReceiveResponse{Event: &registryv1.ReceiveResponse_Message{Message: out}}); err != nil {
				return err
			}
		case mid := <-acks:
			p, ok := pending[mid]
			if !ok {
				continue
			}
			delete(pending, mid)
			if err := c.ack(ctx, id, p.multicast, p.deadline); err != nil {
				c.log.Warn("record acknowledgement", "identity", id, "error", err.Error())
			}
			actx, acancel := context.WithTimeout(ms.ctx, 5*time.Second)
			if _, err := ms.ps.Ack(actx, &pubsubv1.AckRequest{Topic: durableTopic, Durable: durableName, AckTokens: []string{p.token}}); err != nil {
				c.log.Warn("acknowledge on the messaging slot; it will come again", "identity", id, "error", err.Error())
			}
			acancel()
		}
	}
}

// inboxMessage turns a messaging slot message into an inbox message, or
// reports that it is not for this receiver.
func (c *Coordinator) inboxMessage(ms psSlot, id, durableTopic string, ev inboxEvent, pending map[string]pendingAck) (*registryv1.InboxMessage, bool) {
	m := ev.msg
	md := m.GetMetadata()
	if md[mdTarget] != id {
		c.log.Warn("inbox message for another identity dropped", "identity", id)
		return nil, false
	}
	// sent_at is when the messaging slot accepted the message.
	out := &registryv1.InboxMessage{MessageId: m.GetId(), MulticastId: md[mdMulticast], Payload: m.GetPayload(), Attempt: 1,
		SentAt: m.GetPublishTime()}
	for k, v := range md {
		if !strings.HasPrefix(k, reservedPrefix) {
			if out.Metadata == nil {
				out.Metadata = map[string]string{}
			}
			out.Metadata[k] = v
		}
	}
	if !ev.durable {
		return out, true
	}
	out.Attempt = int32(max(m.GetDeliveryAttempt(), 1))
	deadline, err := time.Parse(time.RFC3339Nano, md[mdDeadline])
	if err != nil || c.now().After(deadline) {
		// Its multicast is over (reported TIMEOUT): drop it for good.
		actx, cancel := context.WithTimeout(ms.ctx, 5*time.Second)
		_, _ = ms.ps.Ack(actx, &pubsubv1.AckRequest{Topic: durableTopic, Durable: durableName, AckTokens: []string{m.GetAckToken()}})
		cancel()
		return nil, false
	}
	pending[m.GetId()] = pendingAck{token: m.GetAckToken(), multicast: md[mdMulticast], deadline: deadline}
	return out, true
}
