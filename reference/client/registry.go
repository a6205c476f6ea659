package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// Registry is the Multicast Registry API of a client's namespace (a
// namespace with pattern registry on the proxy). Only Enumerate is retried.
type Registry struct {
	c  *Client
	rc registryv1.RegistryClient
}

// Registry returns the Multicast Registry API.
func (c *Client) Registry() *Registry {
	return &Registry{c: c, rc: registryv1.NewRegistryClient(c.conn)}
}

// Value converts a Go value to a metadata value: string, int, int64,
// float64, bool or []string.
func Value(v any) (*registryv1.Value, error) {
	switch x := v.(type) {
	case string:
		return &registryv1.Value{Kind: &registryv1.Value_StringValue{StringValue: x}}, nil
	case int:
		return &registryv1.Value{Kind: &registryv1.Value_IntValue{IntValue: int64(x)}}, nil
	case int64:
		return &registryv1.Value{Kind: &registryv1.Value_IntValue{IntValue: x}}, nil
	case float64:
		return &registryv1.Value{Kind: &registryv1.Value_FloatValue{FloatValue: x}}, nil
	case bool:
		return &registryv1.Value{Kind: &registryv1.Value_BoolValue{BoolValue: x}}, nil
	case []string:
		return &registryv1.Value{Kind: &registryv1.Value_ListValue{ListValue: &registryv1.StringList{Values: x}}}, nil
	case *registryv1.Value:
		return x, nil
	}
	return nil, fmt.Errorf("convert metadata value: %T is not a string, int, float64, bool or []string", v)
}

// Metadata converts a map of Go values with [Value].
func Metadata(m map[string]any) (map[string]*registryv1.Value, error) {
	out := make(map[string]*registryv1.Value, len(m))
	for k, v := range m {
		x, err := Value(v)
		if err != nil {
			return nil, fmt.Errorf("metadata field %q: %w", k, err)
		}
		out[k] = x
	}
	return out, nil
}

// Registration is what Register sends.
type Registration struct {
	Identity string
	// Metadata values are converted with [Value].
	Metadata map[string]any
	// TTL is how long the registration lives without a heartbeat (required).
	TTL time.Duration
	// Replace renews an existing registration instead of AlreadyExists.
	Replace bool
}

// Register registers an identity and returns when it was registered and
// when it expires.
func (r *Registry) Register(ctx context.Context, reg Registration) (registeredAt, expiresAt time.Time, err error) {
	md, err := Metadata(reg.Metadata)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	ctx, cancel := r.c.callContext(ctx)
	defer cancel()
	resp, err := r.rc.Register(ctx, &registryv1.RegisterRequest{Identity: reg.Identity, Metadata: md, Ttl: durationpb.New(reg.TTL), Replace: reg.Replace})
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("register %q: %w", reg.Identity, err)
	}
	return resp.GetRegisteredAt().AsTime(), resp.GetExpiresAt().AsTime(), nil
}

// Unregister removes an identity and reports whether it was registered.
func (r *Registry) Unregister(ctx context.Context, identity string) (bool, error) {
	ctx, cancel := r.c.callContext(ctx)
	defer cancel()
	resp, err := r.rc.Unregister(ctx, &registryv1.UnregisterRequest{Identity: identity})
	if err != nil {
		return false, fmt.Errorf("unregister %q: %w", identity, err)
	}
	return resp.GetExisted(), nil
}

// EnumerateOptions configure Enumerate.
type EnumerateOptions struct {
	// PageSize is the page size of each call (0: the registry's default).
	PageSize int
	// Metadata asks for the identities' metadata too.
	Metadata bool
}

// EnumeratePage reads one page; cursor is "" for the first.
func (r *Registry) EnumeratePage(ctx context.Context, f *registryv1.Filter, cursor string, o EnumerateOptions) (*registryv1.EnumerateResponse, error) {
	ctx, cancel := r.c.callContext(ctx)
	defer cancel()
	resp, err := r.rc.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: f, PageSize: int32(o.PageSize), Cursor: cursor, IncludeMetadata: o.Metadata})
	if err != nil {
		return nil, fmt.Errorf("enumerate: %w", err)
	}
	return resp, nil
}

// Enumerate walks every page of the identities f selects (nil: all). Each
// page is one call with its own deadline. It stops at the first error.
func (r *Registry) Enumerate(ctx context.Context, f *registryv1.Filter, o EnumerateOptions) iter.Seq2[*registryv1.Identity, error] {
	return func(yield func(*registryv1.Identity, error) bool) {
		cursor := ""
		for {
			resp, err := r.EnumeratePage(ctx, f, cursor, o)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, id := range resp.GetIdentities() {
				if !yield(id, nil) {
					return
				}
			}
			if cursor = resp.GetNextCursor(); cursor == "" {
				return
			}
		}
	}
}

// MulticastOptions configure Multicast.
type MulticastOptions struct {
	// Metadata travels with the message to every receiver.
	Metadata map[string]string
	// AtLeastOnce asks for at-least-once delivery (a durable messaging slot).
	AtLeastOnce bool
	// Timeout bounds the multicast; when ctx has no deadline the call gets
	// Timeout plus a second (else the client's timeout).
	Timeout time.Duration
}

// Multicast sends payload to every identity f selects (nil: all). It is
// never retried: a repeat would deliver twice.
func (r *Registry) Multicast(ctx context.Context, f *registryv1.Filter, payload []byte, o MulticastOptions) (*registryv1.MulticastResponse, error) {
	req := &registryv1.MulticastRequest{Filter: f, Payload: payload, Metadata: o.Metadata, Delivery: registryv1.Delivery_DELIVERY_AT_MOST_ONCE}
	if o.AtLeastOnce {
		req.Delivery = registryv1.Delivery_DELIVERY_AT_LEAST_ONCE
	}
	if o.Timeout > 0 {
		req.Timeout = durationpb.New(o.Timeout)
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.Timeout+time.Second)
			defer cancel()
		}
	}
	ctx, cancel := r.c.callContext(ctx)
	defer cancel()
	resp, err := r.rc.Multicast(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("multicast: %w", err)
	}
	return resp, nil
}

// Inbox is an open Receive stream of one identity. It lives until Close or
// its context ends (the client's timeout does not apply to it).
type Inbox struct {
	stream registryv1.Registry_ReceiveClient
	cancel context.CancelFunc
}

// Receive opens the inbox of identity and returns once it is live: every
// multicast that targets the identity from then on reaches it.
func (r *Registry) Receive(ctx context.Context, identity string) (*Inbox, error) {
	if r.c.namespace != "" {
		ctx = withNamespace(ctx, r.c.namespace)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := r.rc.Receive(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("receive %q: %w", identity, err)
	}
	open := &registryv1.ReceiveRequest{Request: &registryv1.ReceiveRequest_Open_{Open: &registryv1.ReceiveRequest_Open{Identity: identity}}}
	if err := stream.Send(open); err != nil {
		_, err = stream.Recv()
		cancel()
		return nil, fmt.Errorf("receive %q: %w", identity, err)
	}
	ev, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("receive %q: %w", identity, err)
	}
	if ev.GetSubscribed() == nil {
		cancel()
		return nil, fmt.Errorf("receive %q: the first event is %T, want Subscribed", identity, ev.GetEvent())
	}
	return &Inbox{stream: stream, cancel: cancel}, nil
}

// Next returns the next message; the stream's status when it ends, io.EOF
// after Close.
func (i *Inbox) Next() (*registryv1.InboxMessage, error) {
	for {
		ev, err := i.stream.Recv()
		if err != nil {
			return nil, err
		}
		if m := ev.GetMessage(); m != nil {
			return m, nil
		}
	}
}

// Ack acknowledges an at-least-once message by its message_id.
func (i *Inbox) Ack(messageID string) error {
	err := i.stream.Send(&registryv1.ReceiveRequest{Request: &registryv1.ReceiveRequest_Ack_{Ack: &registryv1.ReceiveRequest_Ack{MessageId: messageID}}})
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("ack %q: %w", messageID, err)
	}
	return nil
}

// Close ends the stream.
func (i *Inbox) Close() error {
	i.cancel()
	return nil
}
