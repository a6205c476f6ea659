package mutant

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

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
	)
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
			s.topic, s.durable = sub.GetTopic(), sub.GetDurable()
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
