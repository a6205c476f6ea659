package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prism-suite/prism/proto/capability"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

// pubSubService serves prism.pubsub.v1 over a driver: it admits calls,
// validates input, runs subscriptions with a bounded buffer each, and maps
// driver errors to status codes.
type pubSubService struct {
	pubsubv1.UnimplementedPubSubServer
	s *Server
}

// ValidateTopic checks a topic: 1 to MaxTopicBytes bytes of UTF-8 without
// control characters. Every other character is literal. field names the
// request field in the error.
func ValidateTopic(field, topic string, lim Limits) error {
	lim = lim.withDefaults()
	switch {
	case topic == "":
		return status.Errorf(codes.InvalidArgument, "%s: must not be empty", field)
	case int64(len(topic)) > lim.MaxTopicBytes:
		return status.Errorf(codes.InvalidArgument, "%s: %d bytes exceeds the limit of %d bytes", field, len(topic), lim.MaxTopicBytes)
	case !utf8.ValidString(topic):
		return status.Errorf(codes.InvalidArgument, "%s: must be valid UTF-8", field)
	}
	for i, r := range topic {
		if r < 0x20 || r == 0x7f {
			return status.Errorf(codes.InvalidArgument, "%s: must not contain control characters, found U+%04X at byte %d", field, r, i)
		}
	}
	return nil
}

func validatePayload(field string, p []byte, lim Limits) error {
	lim = lim.withDefaults()
	if int64(len(p)) > lim.MaxPayloadBytes {
		return status.Errorf(codes.InvalidArgument, "%s: %d bytes exceeds the limit of %d bytes", field, len(p), lim.MaxPayloadBytes)
	}
	return nil
}

// ValidateName checks a queue group or durable consumer name: 1 to
// [MaxNameBytes] bytes of letters, digits, '-', '_' and '.'.
func ValidateName(field, name string) error {
	if name == "" || len(name) > MaxNameBytes {
		return status.Errorf(codes.InvalidArgument, "%s: must be 1 to %d bytes, got %d", field, MaxNameBytes, len(name))
	}
	if i := invalidTokenByte(name); i >= 0 {
		return status.Errorf(codes.InvalidArgument, "%s: may hold only letters, digits, '-', '_' and '.', found %q at byte %d", field, name[i], i)
	}
	return nil
}

// invalidTokenByte returns the index of the first byte of s that is not a
// letter, digit, '-', '_' or '.', or -1.
func invalidTokenByte(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return i
		}
	}
	return -1
}

// ValidateMetadata checks a message's metadata against [MaxMetadataEntries],
// [MaxMetadataKeyBytes] and [MaxMetadataBytes]; keys are letters, digits,
// '-', '_' and '.'.
func ValidateMetadata(field string, md map[string]string) error {
	if len(md) > MaxMetadataEntries {
		return status.Errorf(codes.InvalidArgument, "%s: %d entries exceeds the limit of %d", field, len(md), MaxMetadataEntries)
	}
	total := 0
	for k, v := range md {
		if k == "" || len(k) > MaxMetadataKeyBytes {
			return status.Errorf(codes.InvalidArgument, "%s: key %q must be 1 to %d bytes", field, k, MaxMetadataKeyBytes)
		}
		if i := invalidTokenByte(k); i >= 0 {
			return status.Errorf(codes.InvalidArgument, "%s: key %q may hold only letters, digits, '-', '_' and '.'", field, k)
		}
		if !utf8.ValidString(v) {
			return status.Errorf(codes.InvalidArgument, "%s: value of %q must be valid UTF-8", field, k)
		}
		total += len(k) + len(v)
	}
	if total > MaxMetadataBytes {
		return status.Errorf(codes.InvalidArgument, "%s: %d bytes of keys and values exceeds the limit of %d", field, total, MaxMetadataBytes)
	}
	return nil
}

func validateOutgoing(prefix, topic string, payload []byte, md map[string]string, lim Limits) error {
	if err := ValidateTopic(prefix+"topic", topic, lim); err != nil {
		return err
	}
	if err := validatePayload(prefix+"payload", payload, lim); err != nil {
		return err
	}
	return ValidateMetadata(prefix+"metadata", md)
}

func (p *pubSubService) basic() PubSubBasic { return p.s.driver.(PubSubBasic) }

func (p *pubSubService) call(fn func(lim Limits) error) error {
	leave, err := p.s.enter()
	if err != nil {
		return err
	}
	defer leave()
	return ToStatus(fn(p.s.driver.Limits()))
}

func (p *pubSubService) Publish(ctx context.Context, req *pubsubv1.PublishRequest) (*pubsubv1.PublishResponse, error) {
	resp := &pubsubv1.PublishResponse{}
	err := p.call(func(lim Limits) error {
		if err := validateOutgoing("", req.GetTopic(), req.GetPayload(), req.GetMetadata(), lim); err != nil {
			return err
		}
		id, err := p.basic().Publish(ctx, Message{Topic: req.GetTopic(), Payload: nonNil(req.GetPayload()), Metadata: req.GetMetadata()})
		resp.Id = id
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (p *pubSubService) PublishBatch(ctx context.Context, req *pubsubv1.PublishBatchRequest) (*pubsubv1.PublishBatchResponse, error) {
	resp := &pubsubv1.PublishBatchResponse{}
	err := p.call(func(lim Limits) error {
		n := len(req.GetMessages())
		if max := lim.withDefaults().MaxBatchSize; int64(n) > max {
			return status.Errorf(codes.InvalidArgument, "messages: batch of %d exceeds the limit of %d", n, max)
		}
		msgs := make([]Message, n)
		for i, m := range req.GetMessages() {
			if err := validateOutgoing("messages["+strconv.Itoa(i)+"].", m.GetTopic(), m.GetPayload(), m.GetMetadata(), lim); err != nil {
				return err
			}
			msgs[i] = Message{Topic: m.GetTopic(), Payload: nonNil(m.GetPayload()), Metadata: m.GetMetadata()}
		}
		if n == 0 {
			return nil
		}
		ids, err := p.basic().PublishBatch(ctx, msgs)
		if err != nil {
			return err
		}
		if len(ids) != n {
			return status.Errorf(codes.Internal, "driver returned %d ids for %d messages", len(ids), n)
		}
		resp.Ids = ids
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (p *pubSubService) durableDriver() (PubSubDurable, error) {
	d, ok := p.s.driver.(PubSubDurable)
	if !ok {
		return nil, notDeclared(capability.PubSubDurable)
	}
	return d, nil
}

func (p *pubSubService) Ack(ctx context.Context, req *pubsubv1.AckRequest) (*pubsubv1.AckResponse, error) {
	err := p.call(func(lim Limits) error {
		d, err := p.durableDriver()
		if err != nil {
			return err
		}
		if err := ValidateTopic("topic", req.GetTopic(), lim); err != nil {
			return err
		}
		if err := ValidateName("durable", req.GetDurable()); err != nil {
			return err
		}
		tokens := req.GetAckTokens()
		if max := lim.withDefaults().MaxBatchSize; int64(len(tokens)) > max {
			return status.Errorf(codes.InvalidArgument, "ack_tokens: %d tokens exceeds the limit of %d", len(tokens), max)
		}
		for i, t := range tokens {
			if t == "" || len(t) > MaxAckTokenBytes {
				return status.Errorf(codes.InvalidArgument, "ack_tokens[%d]: must be 1 to %d bytes", i, MaxAckTokenBytes)
			}
		}
		if len(tokens) == 0 {
			return nil
		}
		return d.Ack(ctx, req.GetTopic(), req.GetDurable(), tokens)
	})
	if err != nil {
		return nil, err
	}
	return &pubsubv1.AckResponse{}, nil
}

func (p *pubSubService) DeleteDurable(ctx context.Context, req *pubsubv1.DeleteDurableRequest) (*pubsubv1.DeleteDurableResponse, error) {
	err := p.call(func(lim Limits) error {
		d, err := p.durableDriver()
		if err != nil {
			return err
		}
		if err := ValidateTopic("topic", req.GetTopic(), lim); err != nil {
			return err
		}
		if err := ValidateName("durable", req.GetDurable()); err != nil {
			return err
		}
		return d.DeleteDurable(ctx, req.GetTopic(), req.GetDurable())
	})
	if err != nil {
		return nil, err
	}
	return &pubsubv1.DeleteDurableResponse{}, nil
}

// subscribe validates sub and makes the driver subscription.
func (p *pubSubService) subscribe(ctx context.Context, sub *pubsubv1.Subscription, sink *subscriber) (Subscription, error) {
	lim := p.s.driver.Limits()
	if err := ValidateTopic("subscription.topic", sub.GetTopic(), lim); err != nil {
		return nil, err
	}
	group, durable := sub.GetQueueGroup(), sub.GetDurable()
	if group != "" && durable != "" {
		return nil, status.Error(codes.InvalidArgument, "subscription.queue_group: may not be combined with durable (the subscriptions of a durable consumer already share its messages)")
	}
	if sub.GetAckWait() != nil && durable == "" {
		return nil, status.Error(codes.InvalidArgument, "subscription.ack_wait: is only allowed with durable")
	}
	switch {
	case group != "":
		q, ok := p.s.driver.(PubSubQueue)
		if !ok {
			return nil, notDeclared(capability.PubSubQueue)
		}
		if err := ValidateName("subscription.queue_group", group); err != nil {
			return nil, err
		}
		return q.SubscribeQueue(ctx, sub.GetTopic(), group, sink)
	case durable != "":
		d, err := p.durableDriver()
		if err != nil {
			return nil, err
		}
		if err := ValidateName("subscription.durable", durable); err != nil {
			return nil, err
		}
		var wait time.Duration
		if aw := sub.GetAckWait(); aw != nil {
			if err := aw.CheckValid(); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "subscription.ack_wait: %v", err)
			}
			wait = aw.AsDuration()
			if wait != 0 && (wait < MinAckWait || wait > MaxAckWait) {
				return nil, status.Errorf(codes.InvalidArgument, "subscription.ack_wait: must be 0 or from %v to %v, got %v", MinAckWait, MaxAckWait, wait)
			}
		}
		return d.SubscribeDurable(ctx, sub.GetTopic(), durable, wait, sink)
	}
	return p.basic().Subscribe(ctx, sub.GetTopic(), sink)
}

var (
	subscribedEvent   = &pubsubv1.SubscribeEvent{Event: &pubsubv1.SubscribeEvent_Subscribed{Subscribed: &pubsubv1.Subscribed{}}}
	unsubscribedEvent = &pubsubv1.SubscribeEvent{Event: &pubsubv1.SubscribeEvent_Unsubscribed{Unsubscribed: &pubsubv1.Unsubscribed{}}}
)

// Subscribe runs one subscription: it reads the first request, makes the
// driver subscription, sends Subscribed, then forwards buffered events until
// the client unsubscribes or cancels, the subscription fails, or the plugin
// drains.
func (p *pubSubService) Subscribe(stream pubsubv1.PubSub_SubscribeServer) error {
	leave, err := p.s.enterStream()
	if err != nil {
		return err
	}
	defer leave()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()

	reqs := make(chan *pubsubv1.SubscribeRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()

	var first *pubsubv1.SubscribeRequest
	select {
	case first = <-reqs:
	case err := <-recvErr:
		if errors.Is(err, io.EOF) {
			return status.Error(codes.InvalidArgument, "subscription: the request stream ended before a subscription was sent")
		}
		return err
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-p.s.draining:
		return status.Error(codes.Unavailable, "plugin is draining")
	}
	if first.GetSubscription() == nil {
		return status.Error(codes.InvalidArgument, "subscription: the first request must be a subscription")
	}

	sink := newSubscriber(ctx, policyOf(p.s.driver))
	sub, err := p.subscribe(ctx, first.GetSubscription(), sink)
	if err != nil {
		return ToStatus(fmt.Errorf("subscribe: %w", err))
	}
	var unsubOnce sync.Once
	unsubscribe := func() {
		unsubOnce.Do(func() {
			sink.close()
			if err := sub.Unsubscribe(); err != nil {
				p.s.log.Warn("unsubscribe", "topic", first.GetSubscription().GetTopic(), "error", err.Error())
			}
		})
	}
	defer unsubscribe()
	if err := stream.Send(subscribedEvent); err != nil {
		return err
	}

	for {
		select {
		case <-sink.notify:
			if err := sink.flush(stream); err != nil {
				return err
			}
		case r := <-reqs:
			if r.GetUnsubscribe() == nil {
				return status.Error(codes.InvalidArgument, "subscription: may be sent only once; send unsubscribe to end the subscription")
			}
			unsubscribe()
			if err := sink.flush(stream); err != nil {
				return err
			}
			return stream.Send(unsubscribedEvent)
		case err := <-recvErr:
			if !errors.Is(err, io.EOF) {
				return err
			}
			// A half-close changes nothing: the subscription lasts until
			// unsubscribe or cancel.
			recvErr = nil
		case <-sink.failed:
			unsubscribe()
			if err := sink.flush(stream); err != nil {
				return err
			}
			return ToStatus(sink.failure())
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-p.s.draining:
			return status.Error(codes.Unavailable, "plugin is draining")
		}
	}
}

// subscriber is the SDK's Sink: a bounded buffer between the driver's
// Deliver calls and the stream.
type subscriber struct {
	policy SlowConsumerPolicy
	ctx    context.Context
	notify chan struct{} // a buffered event is waiting (capacity 1)
	failed chan struct{} // closed by Fail

	mu      sync.Mutex
	queue   []Message
	bytes   int64
	dropped int64
	closed  bool
	space   chan struct{} // closed and replaced whenever room is made
	err     error
}

func newSubscriber(ctx context.Context, p SlowConsumerPolicy) *subscriber {
	return &subscriber{policy: p, ctx: ctx, notify: make(chan struct{}, 1), failed: make(chan struct{}), space: make(chan struct{})}
}

// sizeOf estimates what a message holds in memory.
func sizeOf(m *Message) int64 {
	n := len(m.Payload) + len(m.Topic) + len(m.ID) + len(m.AckToken) + 64
	for k, v := range m.Metadata {
		n += len(k) + len(v) + 32
	}
	return int64(n)
}

func (s *subscriber) full(size int64) bool {
	return len(s.queue) > 0 && (len(s.queue) >= s.policy.BufferMessages || s.bytes+size > s.policy.BufferBytes)
}

// Deliver implements Sink.
func (s *subscriber) Deliver(m Message) {
	size := sizeOf(&m)
	var deadline *time.Timer
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	s.mu.Lock()
	for !s.closed && s.full(size) {
		if s.policy.Mode != BlockPublisher {
			s.popLocked()
			s.dropped++
			continue
		}
		if deadline == nil {
			deadline = time.NewTimer(s.policy.BlockTimeout)
		}
		space := s.space
		s.mu.Unlock()
		select {
		case <-space:
		case <-s.failed:
		case <-s.ctx.Done():
			return // the stream is ending; the message goes nowhere
		case <-deadline.C:
			s.Fail(status.Errorf(codes.ResourceExhausted,
				"slow consumer: the subscriber's buffer stayed full (%d messages, %d bytes) for the block timeout of %v",
				s.policy.BufferMessages, s.policy.BufferBytes, s.policy.BlockTimeout))
		}
		s.mu.Lock()
	}
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.queue = append(s.queue, m)
	s.bytes += size
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// popLocked removes the oldest message; callers hold s.mu.
func (s *subscriber) popLocked() (Message, bool) {
	if len(s.queue) == 0 {
		return Message{}, false
	}
	m := s.queue[0]
	s.queue[0] = Message{}
	s.queue = s.queue[1:]
	if len(s.queue) == 0 {
		s.queue = nil // let the backing array go
	}
	s.bytes -= sizeOf(&m)
	close(s.space)
	s.space = make(chan struct{})
	return m, true
}

// next returns the next event to send, or nil.
func (s *subscriber) next() *pubsubv1.SubscribeEvent {
	s.mu.Lock()
	if s.dropped > 0 {
		n := s.dropped
		s.dropped = 0
		s.mu.Unlock()
		return &pubsubv1.SubscribeEvent{Event: &pubsubv1.SubscribeEvent_Dropped{Dropped: &pubsubv1.Dropped{Count: n}}}
	}
	m, ok := s.popLocked()
	s.mu.Unlock()
	if !ok {
		return nil
	}
	msg := &pubsubv1.Message{Topic: m.Topic, Payload: m.Payload, Metadata: m.Metadata, Id: m.ID,
		DeliveryAttempt: int32(m.Attempt), AckToken: m.AckToken}
	if !m.PublishTime.IsZero() {
		msg.PublishTime = timestamppb.New(m.PublishTime)
	}
	return &pubsubv1.SubscribeEvent{Event: &pubsubv1.SubscribeEvent_Message{Message: msg}}
}

// flush sends every buffered event.
func (s *subscriber) flush(stream pubsubv1.PubSub_SubscribeServer) error {
	for ev := s.next(); ev != nil; ev = s.next() {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

// close makes later Deliver calls no-ops; what is buffered stays for flush.
func (s *subscriber) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// Fail implements Sink.
func (s *subscriber) Fail(err error) {
	if err == nil {
		err = errors.New("subscription failed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	s.closed = true
	close(s.failed)
}

func (s *subscriber) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// slowConsumerProto returns the policy as Describe reports it.
func slowConsumerProto(p SlowConsumerPolicy) *lifecyclev1.SlowConsumerPolicy {
	out := &lifecyclev1.SlowConsumerPolicy{BufferMessages: int64(p.BufferMessages), BufferBytes: p.BufferBytes}
	switch p.Mode {
	case DropOldest:
		out.Mode = lifecyclev1.SlowConsumerPolicy_MODE_DROP_OLDEST
	case BlockPublisher:
		out.Mode = lifecyclev1.SlowConsumerPolicy_MODE_BLOCK_PUBLISHER
		out.BlockTimeout = durationpb.New(p.BlockTimeout)
	}
	return out
}
