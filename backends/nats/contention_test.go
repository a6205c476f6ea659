package nats_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/sdk"
)

// TestConcurrentPublishersAndSubscribers publishes from many goroutines to a
// few topics while other goroutines subscribe and unsubscribe: under -race
// (task test) a data race in the driver's publish or subscription paths
// fails it, and every subscriber that was there all along gets every message
// of its topic exactly once and nothing else.
func TestConcurrentPublishersAndSubscribers(t *testing.T) {
	const topics, steady, publishers, each, churners = 4, 3, 8, 40, 4
	srv := startServer(t, nil)
	d := connect(t, map[string]any{"url": srv.url()}, nil)
	ctx := ctxT(t, time.Minute)
	topic := func(i int) string { return fmt.Sprintf("load.%d", i%topics) }

	sinks := make([][]*sink, topics)
	for i := range topics {
		for range steady {
			s := newSink()
			sub, err := d.Subscribe(ctx, topic(i), s)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Unsubscribe() })
			sinks[i] = append(sinks[i], s)
		}
	}

	var (
		wg, churn sync.WaitGroup
		stop      = make(chan struct{})
		mu        sync.Mutex
		errs      []error
	)
	record := func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
	for c := range churners {
		churn.Add(1)
		go func() {
			defer churn.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				s := newSink()
				sub, err := d.Subscribe(ctx, topic(c+n), s)
				if err != nil {
					record(fmt.Errorf("churner %d: Subscribe: %w", c, err))
					return
				}
				if err := sub.Unsubscribe(); err != nil {
					record(fmt.Errorf("churner %d: Unsubscribe: %w", c, err))
					return
				}
				s.mu.Lock()
				for _, m := range s.msgs {
					if m.Topic != topic(c+n) {
						record(fmt.Errorf("churner %d subscribed to %q got a message of %q", c, topic(c+n), m.Topic))
					}
				}
				s.mu.Unlock()
			}
		}()
	}
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range each {
				msg := sdk.Message{Topic: topic(p + n), Payload: []byte(fmt.Sprintf("%d/%d", p, n))}
				if _, err := d.Publish(ctx, msg); err != nil {
					record(fmt.Errorf("publisher %d: Publish: %w", p, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	perTopic := publishers * each / topics
	for i := range topics {
		for j, s := range sinks[i] {
			got := s.wait(t, perTopic)
			seen := map[string]bool{}
			for _, m := range got {
				if m.Topic != topic(i) || seen[string(m.Payload)] {
					t.Errorf("subscriber %d of %q got %q from %q (a repeat or another topic)", j, topic(i), m.Payload, m.Topic)
				}
				seen[string(m.Payload)] = true
			}
			if len(got) != perTopic {
				t.Errorf("subscriber %d of %q got %d messages, want %d", j, topic(i), len(got), perTopic)
			}
		}
	}
}
