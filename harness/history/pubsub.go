package history

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

// PubSubOptions shape the durable PubSub workload.
type PubSubOptions struct {
	// Topic and Durable name the topic and its durable consumer.
	Topic, Durable string
	// Publishers is the number of concurrent publishers (default 2), each
	// publishing Rate messages per second (default 50).
	Publishers int
	Rate       float64
	// AckWait is the consumer's ack deadline (default 2s).
	AckWait time.Duration
	// CallTimeout bounds each Publish and Ack (default 1s).
	CallTimeout time.Duration
	// Drain bounds the wait, after the run, for every message acknowledged
	// to a publisher to be delivered (default 20s).
	Drain time.Duration
	// Cycle is how long the consumer keeps one subscription before it
	// closes it and subscribes again (default 2s): durable consumers come
	// back, and what they get then is what is checked.
	Cycle time.Duration
	// Live, when set, is called once the consumer's first subscription is
	// live (before anything is published), or with the error that kept it
	// from being so.
	Live func(error)
}

func (o *PubSubOptions) defaults() {
	if o.Publishers <= 0 {
		o.Publishers = 2
	}
	if o.Rate <= 0 {
		o.Rate = 50
	}
	if o.AckWait <= 0 {
		o.AckWait = 2 * time.Second
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = time.Second
	}
	if o.Drain <= 0 {
		o.Drain = 20 * time.Second
	}
	if o.Cycle <= 0 {
		o.Cycle = 2 * time.Second
	}
}

// PubSubResult is what the durable PubSub workload found.
type PubSubResult struct {
	// Published counts Publish calls by outcome; Acked those the plugin
	// acknowledged (OK).
	Published map[Outcome]int `json:"published"`
	Acked     int             `json:"acked_to_publisher"`
	// Delivered counts deliveries (redeliveries included) and Redelivered
	// the deliveries of a message after its first.
	Delivered   int `json:"delivered"`
	Redelivered int `json:"redelivered"`
	// Lost are messages acknowledged to their publisher and never
	// delivered, even after the drain.
	Lost int `json:"lost"`
	// AfterAck are deliveries of a message after the consumer's Ack of it
	// had returned OK.
	AfterAck int `json:"delivered_after_ack"`
	// Resubscribes counts the consumer's subscriptions after its first
	// (it cycles them, and resubscribes when one breaks);
	// SubscriptionErrors counts the subscriptions that broke.
	Resubscribes       int `json:"resubscribes"`
	SubscriptionErrors int `json:"subscription_errors"`
	// Drained says every acknowledged message was delivered before the
	// drain's deadline.
	Drained bool `json:"drained"`
	// okAt are the invoke and return times of the OK Publishes.
	okAt [][2]time.Time
	// FirstError is the first error a Publish got.
	FirstError string `json:"first_publish_error,omitempty"`
	// LostExamples names a few lost messages.
	LostExamples []string `json:"lost_examples,omitempty"`
}

// FirstOKAfter is how long after t the first Publish invoked after t
// returned OK; false if none did.
func (r *PubSubResult) FirstOKAfter(t time.Time) (time.Duration, bool) {
	for _, ok := range r.okAt { // in the order they returned, per publisher
		if !ok[0].Before(t) {
			best := ok[1]
			for _, o := range r.okAt {
				if !o[0].Before(t) && o[1].Before(best) {
					best = o[1]
				}
			}
			return best.Sub(t), true
		}
	}
	return 0, false
}

// PublishedIn counts the OK Publishes invoked between from and to.
func (r *PubSubResult) PublishedIn(from, to time.Time) int {
	n := 0
	for _, o := range r.okAt {
		if !o[0].Before(from) && !o[0].After(to) {
			n++
		}
	}
	return n
}

// Facts says the result's anomalies in words.
func (r *PubSubResult) Facts() []string {
	var out []string
	if r.Lost > 0 {
		out = append(out, fmt.Sprintf("%d of %d messages acknowledged to the publisher lost", r.Lost, r.Acked))
	}
	if r.AfterAck > 0 {
		out = append(out, fmt.Sprintf("%d deliveries after the consumer's ack", r.AfterAck))
	}
	if r.Redelivered > 0 {
		out = append(out, fmt.Sprintf("%d redeliveries", r.Redelivered))
	}
	return out
}

type delivery struct {
	at time.Time
}

// RunDurablePubSub publishes unique messages from o.Publishers publishers
// to o.Topic and consumes them with the durable consumer o.Durable, which
// acknowledges each, until ctx ends; then waits for healthy (the nemesis
// has healed: the caller returns from it) and drains: the consumer stays
// until every message acknowledged to a publisher is delivered or o.Drain
// passes. The consumer resubscribes whenever its stream breaks.
func RunDurablePubSub(ctx context.Context, ps pubsubv1.PubSubClient, o PubSubOptions, healed <-chan struct{}) (*PubSubResult, error) {
	o.defaults()
	res := &PubSubResult{Published: map[Outcome]int{}}
	var (
		mu       sync.Mutex
		acked    = map[string]bool{}       // acked to the publisher
		delivs   = map[string][]delivery{} // by payload
		ackedAt  = map[string]time.Time{}  // consumer's ack returned OK
		allIn    = make(chan struct{})
		closeAll sync.Once
	)
	subCtx, stopSub := context.WithCancel(context.Background())
	defer stopSub()
	subscribed := make(chan error, 1)
	var subWG sync.WaitGroup
	subWG.Add(1)
	go func() {
		defer subWG.Done()
		first := true
		for subCtx.Err() == nil {
			err := consume(subCtx, ps, o, func(payload, token string) {
				now := time.Now()
				mu.Lock()
				delivs[payload] = append(delivs[payload], delivery{at: now})
				mu.Unlock()
				actx, cancel := context.WithTimeout(subCtx, o.CallTimeout)
				_, err := ps.Ack(actx, &pubsubv1.AckRequest{Topic: o.Topic, Durable: o.Durable, AckTokens: []string{token}})
				cancel()
				if err == nil {
					mu.Lock()
					if _, ok := ackedAt[payload]; !ok {
						ackedAt[payload] = time.Now()
					}
					mu.Unlock()
				}
			}, func() {
				if first {
					first = false
					subscribed <- nil
				}
			})
			if first || !errors.Is(err, errCycle) {
				mu.Lock()
				res.SubscriptionErrors++
				mu.Unlock()
			}
			if first {
				// The first subscription must be live before anything is
				// published: a harness error when it is not.
				first = false
				subscribed <- fmt.Errorf("durable subscription to %s: %w", o.Topic, err)
				return
			}
			if subCtx.Err() != nil {
				return
			}
			mu.Lock()
			res.Resubscribes++
			mu.Unlock()
			if !errors.Is(err, errCycle) {
				select { // retry pace while the backend is down
				case <-subCtx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
	err := <-subscribed
	if o.Live != nil {
		o.Live(err)
	}
	if err != nil {
		return nil, err
	}
	var pubWG sync.WaitGroup
	for p := 0; p < o.Publishers; p++ {
		pubWG.Add(1)
		go func(p int) {
			defer pubWG.Done()
			tick := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				payload := fmt.Sprintf("p%d-%d", p, seq)
				cctx, cancel := context.WithTimeout(context.Background(), o.CallTimeout)
				invoked := time.Now()
				_, err := ps.Publish(cctx, &pubsubv1.PublishRequest{Topic: o.Topic, Payload: []byte(payload)})
				cancel()
				mu.Lock()
				res.Published[OutcomeOf(err)]++
				if err == nil {
					acked[payload] = true
					res.okAt = append(res.okAt, [2]time.Time{invoked, time.Now()})
				} else if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				mu.Unlock()
			}
		}(p)
	}
	pubWG.Wait()
	if healed != nil {
		<-healed
	}
	// Drain: poll until every acknowledged message was delivered.
	deadline := time.Now().Add(o.Drain)
	for time.Now().Before(deadline) {
		mu.Lock()
		missing := 0
		for m := range acked {
			if len(delivs[m]) == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			closeAll.Do(func() { close(allIn) })
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopSub()
	subWG.Wait()
	select {
	case <-allIn:
		res.Drained = true
	default:
	}
	for m := range acked {
		res.Acked++
		ds := delivs[m]
		if len(ds) == 0 {
			res.Lost++
			if len(res.LostExamples) < 5 {
				res.LostExamples = append(res.LostExamples, m)
			}
		}
	}
	for m, ds := range delivs {
		res.Delivered += len(ds)
		res.Redelivered += len(ds) - 1
		if at, ok := ackedAt[m]; ok {
			for _, d := range ds {
				if d.at.After(at) {
					res.AfterAck++
				}
			}
		}
	}
	return res, nil
}

// errCycle ends a subscription the consumer closes to subscribe again.
var errCycle = errors.New("cycled")

// consume runs one durable subscription until it breaks, ctx ends or
// o.Cycle passes (errCycle),
// calling live once it is subscribed and onMsg for every message.
func consume(ctx context.Context, ps pubsubv1.PubSubClient, o PubSubOptions, onMsg func(payload, token string), live func()) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cycled atomic.Bool
	cycle := time.AfterFunc(o.Cycle, func() { cycled.Store(true); cancel() })
	defer cycle.Stop()
	stream, err := ps.Subscribe(sctx)
	if err != nil {
		return err
	}
	sub := &pubsubv1.Subscription{Topic: o.Topic, Durable: o.Durable, AckWait: durationpb.New(o.AckWait)}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{Subscription: sub}}); err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if err != nil && cycled.Load() && ctx.Err() == nil {
			return errCycle
		}
		if errors.Is(err, io.EOF) {
			return errors.New("the subscription ended")
		}
		if err != nil {
			return err
		}
		switch e := ev.GetEvent().(type) {
		case *pubsubv1.SubscribeEvent_Subscribed:
			live()
		case *pubsubv1.SubscribeEvent_Message:
			onMsg(string(e.Message.GetPayload()), e.Message.GetAckToken())
		}
	}
}
