package sdk

import (
	"context"
	"time"
)

// Message is a PubSub message. [PubSubBasic.Publish] receives Topic, Payload
// and Metadata (already validated); a driver delivers every field it has.
type Message struct {
	// Topic is the literal topic: no character has a wildcard or hierarchy
	// meaning, so a driver whose backend gives "." or "*" a meaning must
	// encode the topic.
	Topic    string
	Payload  []byte
	Metadata map[string]string
	// ID identifies the message: Publish returns it and every delivery of the
	// message carries it.
	ID string
	// PublishTime is when the driver accepted the message.
	PublishTime time.Time
	// Attempt counts deliveries to a durable consumer, 1 for the first; 0 for
	// subscriptions that are not durable.
	Attempt int
	// AckToken acknowledges a durable delivery with [PubSubDurable.Ack]; ""
	// for subscriptions that are not durable.
	AckToken string
}

// Sink receives the messages of one subscription. The SDK implements it: it
// buffers messages for the subscriber under the plugin's slow-consumer policy
// and sends them on the subscriber's stream.
type Sink interface {
	// Deliver hands over a message. The driver must not change the message
	// afterwards. Deliver is safe for concurrent use; messages are sent in the
	// order of the Deliver calls, so a driver declaring pubsub.ordered calls it
	// in publish order for the messages of one publisher. Under the
	// drop-oldest policy Deliver never blocks; under block-publisher it blocks
	// up to the policy's BlockTimeout. Calls after the subscription ended are
	// ignored.
	Deliver(Message)
	// Fail ends the subscription with err (mapped to a status code like any
	// driver error), e.g. when its backend consumer was deleted. The SDK then
	// calls Unsubscribe.
	Fail(err error)
}

// Subscription is a live subscription a driver returned.
type Subscription interface {
	// Unsubscribe stops delivery and releases the subscription: once it
	// returns, the driver does not call Deliver again. The SDK calls it exactly
	// once per subscription, also when the plugin drains or stops.
	Unsubscribe() error
}

// PubSubBasic is the contract of capability pubsub.basic.
type PubSubBasic interface {
	// Publish sends msg to every live subscription of msg.Topic and returns
	// the message's id. When it returns nil, every subscription that was live
	// when Publish was called (on this plugin instance or any other sharing
	// the backend) will receive the message once.
	Publish(ctx context.Context, msg Message) (id string, err error)
	// PublishBatch publishes msgs in order, as if by one publisher calling
	// Publish for each, and returns their ids in order. On error, a prefix of
	// msgs may have been published.
	PublishBatch(ctx context.Context, msgs []Message) (ids []string, err error)
	// Subscribe makes a subscription to topic that delivers to sink. When it
	// returns nil, the subscription is live: every message published from then
	// on is delivered. ctx bounds setting the subscription up, not its life,
	// which lasts until Unsubscribe.
	Subscribe(ctx context.Context, topic string, sink Sink) (Subscription, error)
}

// PubSubOrdered is the contract of capability pubsub.ordered (needs
// pubsub.basic): messages of one publisher on one topic reach every
// subscription in publish order. It has one marker method, so a driver states
// the promise in code.
type PubSubOrdered interface {
	// OrderedPerPublisher does nothing; implementing it declares the promise.
	OrderedPerPublisher()
}

// PubSubQueue is the contract of capability pubsub.queue (needs pubsub.basic).
type PubSubQueue interface {
	// SubscribeQueue makes a subscription that is a member of the queue group
	// of topic: each message published to topic goes to exactly one live
	// member of every group (and to every subscription without a group).
	SubscribeQueue(ctx context.Context, topic, group string, sink Sink) (Subscription, error)
}

// PubSubDurable is the contract of capability pubsub.durable (needs pubsub.basic).
type PubSubDurable interface {
	// SubscribeDurable subscribes the durable consumer named durable of topic,
	// creating it when it does not exist (it then keeps every message
	// published to topic from now on until acknowledged). Deliveries carry an
	// Attempt and an AckToken. A message not acknowledged within ackWait (0:
	// the driver's default) of its delivery is delivered again. Several
	// subscriptions of one consumer share its messages.
	SubscribeDurable(ctx context.Context, topic, durable string, ackWait time.Duration, sink Sink) (Subscription, error)
	// Ack acknowledges deliveries of the consumer by their tokens: they are
	// never delivered to it again. [ErrNotFound] when the consumer does not
	// exist; [ErrInvalid] for a token of another consumer.
	Ack(ctx context.Context, topic, durable string, tokens []string) error
	// DeleteDurable removes the consumer; [ErrNotFound] when there is none.
	DeleteDurable(ctx context.Context, topic, durable string) error
}

// SlowConsumerMode is what the SDK does when a subscription's buffer is full.
type SlowConsumerMode int

// The slow-consumer modes, as in prism.lifecycle.v1.SlowConsumerPolicy.
const (
	// DropOldest drops the oldest buffered message and tells the subscriber
	// how many were dropped; Deliver never blocks.
	DropOldest SlowConsumerMode = iota + 1
	// BlockPublisher makes Deliver wait up to BlockTimeout for room, then ends
	// the subscription with ResourceExhausted. Only a driver whose Deliver
	// calls run inside Publish (an in-process bus) really blocks publishers;
	// others would only stall their backend client.
	BlockPublisher
)

// SlowConsumerPolicy bounds what the SDK buffers for one subscription and
// says what happens when the buffer is full. It is declared in Describe.
type SlowConsumerPolicy struct {
	Mode SlowConsumerMode
	// BufferMessages and BufferBytes bound one subscription's buffer; it is
	// full when either is reached. A single message larger than BufferBytes
	// is still buffered alone.
	BufferMessages int
	BufferBytes    int64
	// BlockTimeout is how long Deliver waits for room (BlockPublisher only).
	BlockTimeout time.Duration
}

// PubSubPolicy is optional: a PubSub driver that implements it chooses its
// slow-consumer policy; others get [DefaultSlowConsumerPolicy].
type PubSubPolicy interface {
	// SlowConsumer returns the policy. It may change after Init.
	SlowConsumer() SlowConsumerPolicy
}

// DefaultSlowConsumerPolicy returns the policy of drivers that do not choose
// one: drop oldest, 1024 messages or 8 MiB per subscription.
func DefaultSlowConsumerPolicy() SlowConsumerPolicy {
	return SlowConsumerPolicy{Mode: DropOldest, BufferMessages: 1024, BufferBytes: 8 << 20}
}

// Limits of PubSub requests the SDK enforces besides [Limits].
const (
	// MaxNameBytes bounds queue group and durable consumer names.
	MaxNameBytes = 128
	// MaxMetadataEntries, MaxMetadataKeyBytes and MaxMetadataBytes bound a
	// message's metadata: entries, one key, and all keys and values together.
	MaxMetadataEntries  = 64
	MaxMetadataKeyBytes = 128
	MaxMetadataBytes    = 8 << 10
	// MaxAckTokenBytes bounds one ack token.
	MaxAckTokenBytes = 1024
	// MinAckWait and MaxAckWait bound a durable subscription's ack_wait.
	MinAckWait = 100 * time.Millisecond
	MaxAckWait = 12 * time.Hour
)

// policyOf returns d's slow-consumer policy with defaults filled in.
func policyOf(d Driver) SlowConsumerPolicy {
	p := DefaultSlowConsumerPolicy()
	if pp, ok := d.(PubSubPolicy); ok {
		got := pp.SlowConsumer()
		if got.Mode == DropOldest || got.Mode == BlockPublisher {
			p.Mode = got.Mode
		}
		if got.BufferMessages > 0 {
			p.BufferMessages = got.BufferMessages
		}
		if got.BufferBytes > 0 {
			p.BufferBytes = got.BufferBytes
		}
		p.BlockTimeout = got.BlockTimeout
	}
	if p.Mode == BlockPublisher && p.BlockTimeout <= 0 {
		p.BlockTimeout = time.Second
	}
	if p.Mode == DropOldest {
		p.BlockTimeout = 0
	}
	return p
}
