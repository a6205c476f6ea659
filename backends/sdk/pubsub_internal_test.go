package sdk

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func msg(i int) Message {
	return Message{Topic: "t", Payload: []byte(fmt.Sprint(i)), ID: fmt.Sprint(i)}
}

// drain returns the events buffered in s: message ids and dropped counts.
func drainEvents(s *subscriber) (ids []string, dropped int64) {
	for ev := s.next(); ev != nil; ev = s.next() {
		if d := ev.GetDropped(); d != nil {
			dropped += d.GetCount()
			continue
		}
		ids = append(ids, ev.GetMessage().GetId())
	}
	return ids, dropped
}

func TestDropOldestKeepsTheNewestAndCountsTheRest(t *testing.T) {
	s := newSubscriber(context.Background(), SlowConsumerPolicy{Mode: DropOldest, BufferMessages: 3, BufferBytes: 1 << 20})
	for i := range 10 {
		s.Deliver(msg(i))
	}
	ids, dropped := drainEvents(s)
	if fmt.Sprint(ids) != "[7 8 9]" || dropped != 7 {
		t.Fatalf("got %v and %d dropped, want [7 8 9] and 7 dropped", ids, dropped)
	}
	// The Dropped event comes before the message after the gap.
	s.Deliver(msg(10))
	s.Deliver(msg(11))
	s.Deliver(msg(12))
	s.Deliver(msg(13))
	if ev := s.next(); ev.GetDropped().GetCount() != 1 {
		t.Fatalf("first event after a drop = %v, want Dropped{1}", ev)
	}
	if ev := s.next(); ev.GetMessage().GetId() != "11" {
		t.Fatalf("event after Dropped = %v, want message 11", ev)
	}
}

func TestDropOldestBoundsBytes(t *testing.T) {
	s := newSubscriber(context.Background(), SlowConsumerPolicy{Mode: DropOldest, BufferMessages: 1000, BufferBytes: 10_000})
	for i := range 100 {
		s.Deliver(Message{ID: fmt.Sprint(i), Payload: make([]byte, 1000)})
	}
	s.mu.Lock()
	n, b := len(s.queue), s.bytes
	s.mu.Unlock()
	if b > 10_000 || n == 0 || n > 10 {
		t.Fatalf("buffer holds %d messages, %d bytes; want at most 10 000 bytes", n, b)
	}
	// One message larger than the whole buffer is still buffered alone.
	s.Deliver(Message{ID: "huge", Payload: make([]byte, 50_000)})
	ids, _ := drainEvents(s)
	if len(ids) != 1 || ids[0] != "huge" {
		t.Fatalf("after a huge message the buffer holds %v, want [huge]", ids)
	}
}

func TestBlockPublisherWaitsThenEndsTheSubscription(t *testing.T) {
	s := newSubscriber(context.Background(), SlowConsumerPolicy{Mode: BlockPublisher, BufferMessages: 2, BufferBytes: 1 << 20, BlockTimeout: 100 * time.Millisecond})
	s.Deliver(msg(0))
	s.Deliver(msg(1))

	// A reader makes room: the blocked Deliver goes through.
	done := make(chan struct{})
	go func() { s.Deliver(msg(2)); close(done) }()
	time.Sleep(20 * time.Millisecond) // let Deliver block (not a readiness wait: the test checks it is still blocked)
	select {
	case <-done:
		t.Fatal("Deliver into a full buffer did not wait")
	default:
	}
	if ev := s.next(); ev.GetMessage().GetId() != "0" {
		t.Fatalf("next = %v, want message 0", ev)
	}
	<-done

	// Nobody reads: after the block timeout the subscription fails.
	start := time.Now()
	s.Deliver(msg(3))
	if d := time.Since(start); d < 90*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Deliver waited %v, want about the 100ms block timeout", d)
	}
	select {
	case <-s.failed:
	default:
		t.Fatal("the subscription did not fail after the block timeout")
	}
	if status.Code(s.failure()) != codes.ResourceExhausted {
		t.Fatalf("failure = %v, want ResourceExhausted", s.failure())
	}
	// Later deliveries return at once and are dropped; buffered ones stay.
	start = time.Now()
	s.Deliver(msg(4))
	if time.Since(start) > 50*time.Millisecond {
		t.Fatal("Deliver after failure blocked")
	}
	ids, dropped := drainEvents(s)
	if fmt.Sprint(ids) != "[1 2]" || dropped != 0 {
		t.Fatalf("buffered after failure: %v (dropped %d), want [1 2]", ids, dropped)
	}
}

func TestDeliverIsSafeForConcurrentUse(t *testing.T) {
	for _, mode := range []SlowConsumerMode{DropOldest, BlockPublisher} {
		s := newSubscriber(context.Background(), SlowConsumerPolicy{Mode: mode, BufferMessages: 16, BufferBytes: 1 << 20, BlockTimeout: 5 * time.Second})
		var wg sync.WaitGroup
		for p := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 500 {
					s.Deliver(msg(p*1000 + i))
				}
			}()
		}
		got, dropped := 0, int64(0)
		stop := make(chan struct{})
		go func() { wg.Wait(); close(stop) }()
		for running := true; running; {
			select {
			case <-stop:
				running = false
			case <-s.notify:
			}
			ids, d := drainEvents(s)
			got += len(ids)
			dropped += d
		}
		if int64(got)+dropped != 8*500 {
			t.Errorf("mode %d: %d delivered + %d dropped, want 4000", mode, got, dropped)
		}
		if mode == BlockPublisher && dropped != 0 {
			t.Errorf("block-publisher dropped %d", dropped)
		}
	}
}

func TestValidation(t *testing.T) {
	lim := Limits{MaxTopicBytes: 8}
	for _, topic := range []string{"", "123456789", "a\nb", "a\x00", "\x7f", "a\tb"} {
		if err := ValidateTopic("topic", topic, lim); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ValidateTopic(%q) = %v, want InvalidArgument", topic, err)
		}
	}
	for _, topic := range []string{"a", "a.*", ">", "a b", "é", "12345678"} {
		if err := ValidateTopic("topic", topic, lim); err != nil {
			t.Errorf("ValidateTopic(%q) = %v, want nil", topic, err)
		}
	}
	for _, name := range []string{"", "a b", "a*", "a>", string(make([]byte, MaxNameBytes+1))} {
		if err := ValidateName("durable", name); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ValidateName(%q) = %v, want InvalidArgument", name, err)
		}
	}
	if err := ValidateName("durable", "Orders-1.v2_x"); err != nil {
		t.Errorf("ValidateName = %v", err)
	}
	big := map[string]string{}
	for i := range MaxMetadataEntries + 1 {
		big[fmt.Sprint("k", i)] = ""
	}
	for _, md := range []map[string]string{{"": "x"}, {"a:b": "x"}, {"k": string(make([]byte, MaxMetadataBytes))}, big} {
		if err := ValidateMetadata("metadata", md); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ValidateMetadata(%d entries) = %v, want InvalidArgument", len(md), err)
		}
	}
}
