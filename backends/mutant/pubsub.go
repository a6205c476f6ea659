package mutant

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prism-suite/prism/proto/capability"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
)

// The PubSub mutants are stream interceptors on Subscribe: they see the
// subscription request and every event the plugin sends, and break one
// promise at a time.
func init() {
	all = append(all,
		Mutant{Name: "drop-1pct", Breaks: capability.PubSubBasic, Defect: "one message in a hundred is silently not delivered",
			stream: onSubscribe(func(*subStream) subHooks {
				return subHooks{send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
					if ev.GetMessage() != nil && dropCounter.Add(1)%100 == 50 {
						return nil
					}
					return send(ev)
				}}
			})},
		Mutant{Name: "reorder", Breaks: capability.PubSubOrdered, Defect: "every tenth message is held back and delivered after the next one",
			stream: onSubscribe(func(*subStream) subHooks {
				var held *pubsubv1.SubscribeEvent
				n := 0
				return subHooks{send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
					if ev.GetMessage() == nil {
						return send(ev)
					}
					n++
					if held == nil && n%10 == 5 {
						held = ev
						return nil
					}
					if err := send(ev); err != nil || held == nil {
						return err
					}
					h := held
					held = nil
					return send(h)
				}}
			})},
		Mutant{Name: "one-of-n", Breaks: capability.PubSubBasic, Defect: "only the first subscriber of a topic receives its messages",
			stream: func() grpc.StreamServerInterceptor {
				var mu sync.Mutex
				owner := map[string]*subStream{}
				return onSubscribe(func(s *subStream) subHooks {
					return subHooks{
						recv: func(req *pubsubv1.SubscribeRequest) *pubsubv1.SubscribeRequest {
							if t := req.GetSubscription().GetTopic(); t != "" {
								mu.Lock()
								if owner[t] == nil {
									owner[t] = s
								}
								mu.Unlock()
							}
							return req
						},
						send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
							if m := ev.GetMessage(); m != nil {
								mu.Lock()
								mine := owner[s.topic] == s
								mu.Unlock()
								if !mine {
									return nil
								}
							}
							return send(ev)
						},
					}
				})()
			}},
		Mutant{Name: "ignore-unsubscribe", Breaks: capability.PubSubBasic,
			Defect: "an unsubscribe is answered with Unsubscribed but delivery goes on",
			stream: onSubscribe(func(s *subStream) subHooks {
				return subHooks{recv: func(req *pubsubv1.SubscribeRequest) *pubsubv1.SubscribeRequest {
					if req.GetUnsubscribe() == nil {
						return req
					}
					_ = s.send(&pubsubv1.SubscribeEvent{Event: &pubsubv1.SubscribeEvent_Unsubscribed{Unsubscribed: &pubsubv1.Unsubscribed{}}})
					return nil // swallowed: the plugin never learns of it
				}}
			})},
		Mutant{Name: "lose-metadata", Breaks: capability.PubSubBasic, Defect: "delivered messages carry no metadata",
			stream: onSubscribe(func(*subStream) subHooks {
				return subHooks{send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
					if m := ev.GetMessage(); m != nil && len(m.GetMetadata()) > 0 {
						m = proto.Clone(m).(*pubsubv1.Message)
						m.Metadata = nil
						ev = &pubsubv1.SubscribeEvent{Event: &pubsubv1.SubscribeEvent_Message{Message: m}}
					}
					return send(ev)
				}}
			})},
		Mutant{Name: "topic-leak", Breaks: capability.PubSubBasic,
			Defect: "a subscriber also receives the messages of topics that start with its topic",
			stream: func() grpc.StreamServerInterceptor {
				var mu sync.Mutex
				live := map[*subStream]bool{}
				return onSubscribe(func(s *subStream) subHooks {
					return subHooks{
						recv: func(req *pubsubv1.SubscribeRequest) *pubsubv1.SubscribeRequest {
							if req.GetSubscription() != nil {
								mu.Lock()
								live[s] = true
								mu.Unlock()
							}
							return req
						},
						send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
							if ev.GetMessage() != nil {
								mu.Lock()
								var others []*subStream
								for o := range live {
									if o != s && o.topic != s.topic && strings.HasPrefix(s.topic, o.topic) {
										others = append(others, o)
									}
								}
								mu.Unlock()
								for _, o := range others {
									_ = o.send(ev)
								}
							}
							return send(ev)
						},
						done: func() {
							mu.Lock()
							delete(live, s)
							mu.Unlock()
						},
					}
				})()
			}},
		Mutant{Name: "queue-broadcast", Breaks: capability.PubSubQueue, Defect: "queue groups are ignored: every member gets every message",
			stream: onSubscribe(func(*subStream) subHooks {
				return subHooks{recv: func(req *pubsubv1.SubscribeRequest) *pubsubv1.SubscribeRequest {
					if sub := req.GetSubscription(); sub.GetQueueGroup() != "" {
						sub = proto.Clone(sub).(*pubsubv1.Subscription)
						sub.QueueGroup = ""
						return &pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{Subscription: sub}}
					}
					return req
				}}
			})},
		Mutant{Name: "unbounded-buffer", Breaks: capability.PubSubBasic,
			Defect: "events for a subscriber are queued without bound instead of under the slow-consumer policy",
			stream: onSubscribe(func(s *subStream) subHooks {
				var (
					mu      sync.Mutex
					queue   []*pubsubv1.SubscribeEvent
					started bool
					wake    = make(chan struct{}, 1)
				)
				pump := func(send func(*pubsubv1.SubscribeEvent) error) {
					for {
						mu.Lock()
						if len(queue) == 0 {
							mu.Unlock()
							select {
							case <-wake:
								continue
							case <-s.ctx.Done():
								return
							}
						}
						ev := queue[0]
						queue = queue[1:]
						mu.Unlock()
						if send(ev) != nil {
							return
						}
					}
				}
				return subHooks{send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
					mu.Lock()
					queue = append(queue, ev)
					if !started {
						started = true
						go pump(send)
					}
					mu.Unlock()
					select {
					case wake <- struct{}{}:
					default:
					}
					return nil
				}}
			})},
		Mutant{Name: "redeliver-acked", Breaks: capability.PubSubDurable, Base: "nats",
			Defect: "a durable consumer that reconnects first gets again every message it was ever sent, acknowledged or not",
			stream: func() grpc.StreamServerInterceptor {
				var mu sync.Mutex
				sent := map[string][]*pubsubv1.SubscribeEvent{} // by topic and durable
				return onSubscribe(func(s *subStream) subHooks {
					return subHooks{send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
						if s.durable == "" {
							return send(ev)
						}
						key := s.topic + "\x00" + s.durable
						if ev.GetSubscribed() != nil {
							if err := send(ev); err != nil {
								return err
							}
							mu.Lock()
							replay := append([]*pubsubv1.SubscribeEvent(nil), sent[key]...)
							mu.Unlock()
							for _, r := range replay {
								if err := send(r); err != nil {
									return err
								}
							}
							return nil
						}
						if ev.GetMessage() != nil {
							mu.Lock()
							sent[key] = append(sent[key], ev)
							mu.Unlock()
						}
						return send(ev)
					}}
				})()
			}},
		Mutant{Name: "durable-no-redelivery", Breaks: capability.PubSubDurable, Base: "nats",
			Defect: "unacknowledged durable messages are never delivered again",
			stream: onSubscribe(func(*subStream) subHooks {
				return subHooks{send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
					if ev.GetMessage().GetDeliveryAttempt() > 1 {
						return nil
					}
					return send(ev)
				}}
			})},
		Mutant{Name: "replay-last-3", Breaks: capability.PubSubBasic,
			Defect: "a new subscriber first gets the last 3 messages of its topic (a small retained buffer)",
			stream: replayToNew(3, func(s *subStream) bool { return s.group == "" && s.durable == "" })},
		Mutant{Name: "queue-sticky", Breaks: capability.PubSubQueue,
			Defect: "a queue group delivers every message to its first live member: later members get none while it lives",
			stream: queueSticky},
		Mutant{Name: "queue-leaver-keeps-share", Breaks: capability.PubSubQueue,
			Defect: "a queue member that unsubscribes is answered with Unsubscribed but keeps its share of the group's messages",
			stream: onSubscribe(func(s *subStream) subHooks {
				return subHooks{recv: func(req *pubsubv1.SubscribeRequest) *pubsubv1.SubscribeRequest {
					if req.GetUnsubscribe() == nil || s.group == "" {
						return req
					}
					_ = s.send(&pubsubv1.SubscribeEvent{Event: &pubsubv1.SubscribeEvent_Unsubscribed{Unsubscribed: &pubsubv1.Unsubscribed{}}})
					return nil // swallowed: the plugin keeps the member in the group
				}}
			})},
		Mutant{Name: "queue-replay-to-joiner", Breaks: capability.PubSubQueue,
			Defect: "a member joining a queue group first gets the last 5 messages the group delivered (a rebalance hands it the group's recent buffer)",
			stream: replayToNew(5, func(s *subStream) bool { return s.group != "" })},
		durableStart("durable-from-start", 0,
			"a new durable consumer first gets every message its topic had before it was made (deliver all instead of deliver new)"),
		durableStart("durable-last-before", 1,
			"a new durable consumer first gets the newest message its topic had before it was made (deliver last instead of deliver new)"),
	)
}

// replayToNew makes a mutant that keeps the last n messages sent to
// subscriptions chosen by pick, per topic and queue group, and sends them to
// each new such subscription right after its Subscribed event.
func replayToNew(n int, pick func(*subStream) bool) func() grpc.StreamServerInterceptor {
	return func() grpc.StreamServerInterceptor {
		var mu sync.Mutex
		recent := map[string][]*pubsubv1.SubscribeEvent{}
		return onSubscribe(func(s *subStream) subHooks {
			return subHooks{send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
				if !pick(s) {
					return send(ev)
				}
				key := s.topic + "\x00" + s.group
				switch {
				case ev.GetSubscribed() != nil:
					if err := send(ev); err != nil {
						return err
					}
					mu.Lock()
					replay := append([]*pubsubv1.SubscribeEvent(nil), recent[key]...)
					mu.Unlock()
					for _, r := range replay {
						if err := send(r); err != nil {
							return err
						}
					}
					return nil
				case ev.GetMessage() != nil:
					mu.Lock()
					kept := recent[key]
					if !slices.ContainsFunc(kept, func(k *pubsubv1.SubscribeEvent) bool { return k.GetMessage().GetId() == ev.GetMessage().GetId() }) {
						kept = append(kept, ev)
						if len(kept) > n {
							kept = kept[len(kept)-n:]
						}
						recent[key] = kept
					}
					mu.Unlock()
				}
				return send(ev)
			}}
		})()
	}
}

// queueSticky sends every message of a queue group to the group's first
// live member (in join order); a member is no longer live once it asked to
// unsubscribe.
func queueSticky() grpc.StreamServerInterceptor {
	var mu sync.Mutex
	members := map[string][]*subStream{} // by topic and group, in join order
	remove := func(s *subStream) {
		mu.Lock()
		defer mu.Unlock()
		key := s.topic + "\x00" + s.group
		members[key] = slices.DeleteFunc(members[key], func(x *subStream) bool { return x == s })
	}
	return onSubscribe(func(s *subStream) subHooks {
		return subHooks{
			recv: func(req *pubsubv1.SubscribeRequest) *pubsubv1.SubscribeRequest {
				switch {
				case s.group == "":
				case req.GetSubscription() != nil:
					mu.Lock()
					key := s.topic + "\x00" + s.group
					members[key] = append(members[key], s)
					mu.Unlock()
				case req.GetUnsubscribe() != nil:
					remove(s)
				}
				return req
			},
			send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
				if s.group == "" || ev.GetMessage() == nil {
					return send(ev)
				}
				mu.Lock()
				var first *subStream
				if m := members[s.topic+"\x00"+s.group]; len(m) > 0 {
					first = m[0]
				}
				mu.Unlock()
				if first == nil || first == s || first.send(ev) != nil {
					return send(ev)
				}
				return nil
			},
			done: func() {
				if s.group != "" {
					remove(s)
				}
			},
		}
	})()
}

// durableStart makes a mutant that records what Publish and PublishBatch
// accepted per topic, and sends a durable consumer the mutant has not seen
// (or saw deleted) the last n of its topic's earlier messages right after its
// Subscribed event: all of them when n is 0. The replayed deliveries carry an
// ack token the base plugin does not know. Its unary and stream interceptors
// share one record per Mutant value (one per prism-mutant process), so the
// builders do not make fresh state as other mutants' do.
func durableStart(name string, n int, defect string) Mutant {
	var mu sync.Mutex
	published := map[string][]*pubsubv1.Message{} // by topic
	known := map[string]bool{}                    // topic and durable
	record := func(topic string, payload []byte, md map[string]string, id string) {
		mu.Lock()
		defer mu.Unlock()
		published[topic] = append(published[topic], &pubsubv1.Message{Topic: topic, Payload: payload, Metadata: md, Id: id,
			PublishTime: timestamppb.Now(), DeliveryAttempt: 1, AckToken: "replayed-" + id})
		if len(published[topic]) > 10000 {
			published[topic] = published[topic][1:]
		}
	}
	svc := "/" + pubsubv1.PubSub_ServiceDesc.ServiceName + "/"
	unary := func() grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			if err != nil {
				return resp, err
			}
			switch info.FullMethod {
			case svc + "Publish":
				r := req.(*pubsubv1.PublishRequest)
				record(r.GetTopic(), r.GetPayload(), r.GetMetadata(), resp.(*pubsubv1.PublishResponse).GetId())
			case svc + "PublishBatch":
				for i, m := range req.(*pubsubv1.PublishBatchRequest).GetMessages() {
					if ids := resp.(*pubsubv1.PublishBatchResponse).GetIds(); i < len(ids) {
						record(m.GetTopic(), m.GetPayload(), m.GetMetadata(), ids[i])
					}
				}
			case svc + "DeleteDurable":
				r := req.(*pubsubv1.DeleteDurableRequest)
				mu.Lock()
				delete(known, r.GetTopic()+"\x00"+r.GetDurable())
				mu.Unlock()
			}
			return resp, err
		}
	}
	stream := onSubscribe(func(s *subStream) subHooks {
		return subHooks{send: func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error {
			if s.durable == "" || ev.GetSubscribed() == nil {
				return send(ev)
			}
			if err := send(ev); err != nil {
				return err
			}
			key := s.topic + "\x00" + s.durable
			mu.Lock()
			var replay []*pubsubv1.Message
			if !known[key] {
				known[key] = true
				replay = published[s.topic]
				if n > 0 && len(replay) > n {
					replay = replay[len(replay)-n:]
				}
				replay = slices.Clone(replay)
			}
			mu.Unlock()
			for _, m := range replay {
				if err := send(&pubsubv1.SubscribeEvent{Event: &pubsubv1.SubscribeEvent_Message{Message: m}}); err != nil {
					return err
				}
			}
			return nil
		}}
	})
	return Mutant{Name: name, Breaks: capability.PubSubDurable, Base: "nats", Defect: defect, unary: unary, stream: stream}
}

// dropCounter counts messages across subscriptions for drop-1pct.
var dropCounter atomic.Int64

var subscribeMethod = "/" + pubsubv1.PubSub_ServiceDesc.ServiceName + "/Subscribe"

// subHooks are what a stream mutant changes on one subscription: recv sees
// each request from the client (returning nil swallows it), send each event
// to the client (calling send, or not), done runs when the subscription ends.
type subHooks struct {
	recv func(req *pubsubv1.SubscribeRequest) *pubsubv1.SubscribeRequest
	send func(ev *pubsubv1.SubscribeEvent, send func(*pubsubv1.SubscribeEvent) error) error
	done func()
}

// subStream wraps the server side of one Subscribe call.
type subStream struct {
	grpc.ServerStream
	ctx     context.Context
	hooks   subHooks
	topic   string // from the subscription request
	durable string
	group   string

	sendMu sync.Mutex // the plugin and other mutated streams may send concurrently
}

// send sends ev on the real stream, safe for concurrent use.
func (s *subStream) send(ev *pubsubv1.SubscribeEvent) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	return s.ServerStream.SendMsg(ev)
}

// SendMsg is the plugin sending an event.
func (s *subStream) SendMsg(m any) error {
	ev, ok := m.(*pubsubv1.SubscribeEvent)
	if !ok {
		s.sendMu.Lock()
		defer s.sendMu.Unlock()
		return s.ServerStream.SendMsg(m)
	}
	if s.hooks.send == nil {
		return s.send(ev)
	}
	return s.hooks.send(ev, s.send)
}

// RecvMsg is the plugin reading a request.
func (s *subStream) RecvMsg(m any) error {
	for {
		if err := s.ServerStream.RecvMsg(m); err != nil {
			return err
		}
		req, ok := m.(*pubsubv1.SubscribeRequest)
		if !ok {
			return nil
		}
		if sub := req.GetSubscription(); sub != nil && s.topic == "" {
			s.topic, s.durable, s.group = sub.GetTopic(), sub.GetDurable(), sub.GetQueueGroup()
		}
		if s.hooks.recv == nil {
			return nil
		}
		out := s.hooks.recv(req)
		if out == nil {
			continue // swallowed
		}
		if out != req {
			proto.Reset(req)
			proto.Merge(req, out)
		}
		return nil
	}
}

// onSubscribe builds a stream interceptor that applies the hooks made by
// mk to every Subscribe call, and passes other streams through.
func onSubscribe(mk func(s *subStream) subHooks) func() grpc.StreamServerInterceptor {
	return func() grpc.StreamServerInterceptor {
		return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if info.FullMethod != subscribeMethod {
				return h(srv, ss)
			}
			ctx, cancel := context.WithCancel(ss.Context())
			s := &subStream{ServerStream: ss, ctx: ctx}
			s.hooks = mk(s)
			defer func() {
				if s.hooks.done != nil {
					s.hooks.done()
				}
				// No send on this stream after its handler returned.
				s.sendMu.Lock()
				cancel()
				s.sendMu.Unlock()
			}()
			return h(srv, s)
		}
	}
}
