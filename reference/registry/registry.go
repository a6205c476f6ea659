// Package registry is the Multicast Registry coordinator: it serves
// prism.registry.v1.Registry for one namespace of the reference proxy by
// composing two plugin slots — a KeyValue plugin (the registry slot, which
// must declare keyvalue.basic, keyvalue.scan and keyvalue.ttl) that holds
// every piece of state, and a PubSub plugin (the messaging slot) that
// carries each identity's inbox.
//
// # State
//
// All registry state lives in the registry slot; the coordinator keeps none
// that a restart would lose, so two proxies on the same slots serve the same
// registry. What it holds in memory is derived or its own: the presence keys
// of the Receive streams it serves (to refresh them), which other proxies
// answered its pings, and an index of the records and of the presence keys
// (index.go): a copy of them, used only while a version key in the slot,
// which every change through any proxy renews, still holds the version the
// copy was loaded under — so Enumerate and Multicast read one key, not every
// record, and still see every change that returned before they started.
// Keys start with the namespace's KeyPrefix (see keys.go for the layout): a
// record per identity (a protobuf Identity: metadata, registered_at,
// expires_at) written with the slot's TTL, a presence key per open Receive
// stream, an acknowledgement key per at-least-once delivery, and the two
// index versions. Identities are escaped in keys and encoded in topics so that any
// character ('.', '*', '>', '/', spaces, any Unicode) is safe and one
// identity never shares a key or an inbox with another.
//
// # Expiry
//
// A record's expires_at decides: an expired identity is never enumerated or
// targeted, does not count against the quota, and can be registered again at
// once. The record is written with the slot TTL ttl+ExpiryGrace, so the slot
// collects it shortly after.
//
// # Register and its race
//
// Register reads the record, then writes it. KeyValue has no compare-and-set,
// so two concurrent Registers of the same new identity with replace=false
// may both succeed (the last write wins) instead of one getting
// AlreadyExists; likewise two Registers racing for the last quota slot may
// both get in. The window is one slot round trip. AlreadyExists and the quota
// are exact for registrations that do not overlap in time.
//
// # Delivery
//
// Multicast resolves its targets when it runs. At-most-once (the default)
// publishes once to the inbox topic of every target that has a live
// receiver — an open Receive stream whose presence key is in the registry
// slot and whose proxy answers on the messaging slot — and reports
// DELIVERED when the messaging slot accepted the message; a target without a
// live receiver is FAILED ("no receiver") and gets nothing; nothing is
// retried. At-least-once needs a messaging slot declaring pubsub.durable: the
// message goes to the identity's durable inbox and is DELIVERED only when
// the receiver acknowledged it within the timeout (acknowledgements are keys
// in the registry slot that Multicast polls, so the receiver may be on
// another proxy); the messaging slot redelivers what was not acknowledged
// after AckWait. Fan-out runs with at most MaxFanout publish calls in
// flight and ends by the call's deadline or the request's timeout.
//
// # Mutants
//
// For testing the registry suite only, a binary built with
// -tags prism_mutants builds a deliberate defect (see registrymutant) into
// the coordinator when [WithMutant] or the environment variable
// registrymutant.Env names one. The default build has no defects and reads
// no such variable.
package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"crypto/rand"
	"encoding/hex"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/registry/filter"
)

// Metadata keys the coordinator sends to its slots.
const (
	namespaceKey = "x-prism-namespace"
	requestIDKey = "x-request-id"
)

// RegistrySlotRequires are the capabilities the registry slot's plugin must
// declare; MessagingSlotRequires those of the messaging slot's.
var (
	RegistrySlotRequires  = []capability.Name{capability.KeyValueBasic, capability.KeyValueScan, capability.KeyValueTTL}
	MessagingSlotRequires = []capability.Name{capability.PubSubBasic}
)

// Capabilities returns the registry capabilities a namespace offers, given
// what its slots' plugins declare: registry.basic needs the registry slot's
// requirements, registry.multicast adds pubsub.basic on the messaging slot,
// registry.at_least_once adds pubsub.durable.
func Capabilities(registrySlot, messagingSlot capability.Set) capability.Set {
	out := capability.Set{}
	for _, c := range RegistrySlotRequires {
		if !registrySlot.Has(c) {
			return out
		}
	}
	out[capability.RegistryBasic] = true
	if messagingSlot.Has(capability.PubSubBasic) {
		out[capability.RegistryMulticast] = true
		if messagingSlot.Has(capability.PubSubDurable) {
			out[capability.RegistryAtLeastOnce] = true
		}
	}
	return out
}

// Slot reaches the plugin that fills one slot: its connection and its
// Describe answer. When the plugin cannot serve (down, refused) it returns a
// status error (Unavailable, FailedPrecondition) that the coordinator passes
// to its caller.
type Slot func() (grpc.ClientConnInterface, *lifecyclev1.DescribeResponse, error)

// Option configures [New].
type Option func(*Coordinator)

// WithLogger sets the logger (default: slog's default logger).
func WithLogger(l *slog.Logger) Option { return func(c *Coordinator) { c.log = l } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(c *Coordinator) { c.now = now } }

// WithMutant builds the named defect (see registrymutant) into the
// coordinator, in place of the one the environment names; "" builds none.
// Tests of the suite only: outside a prism_mutants build, [New] refuses any
// name but "".
func WithMutant(name string) Option {
	return func(c *Coordinator) { c.mutantName = name; c.mutantSet = true }
}

// Coordinator serves the registry of one namespace.
type Coordinator struct {
	ns       string
	cfg      Config
	reg, msg Slot
	log      *slog.Logger
	now      func() time.Time
	// mutant is the defect built in (a prism_mutants build only), named
	// mutantName; mutantSet: WithMutant named it, not the environment.
	mutant     mutantID
	mutantName string
	mutantSet  bool
	// owner identifies this coordinator in presence keys and peer topics.
	owner string
	// records and presence are the indexes of the record and presence
	// keys (index.go).
	records  *index[record]
	presence *index[presence]

	seq atomic.Uint64

	mu sync.Mutex
	// receivers are the presence keys of this coordinator's open Receive
	// streams, refreshed by the refresher.
	receivers map[string]bool
	// waiters wake an at-least-once Multicast when a local receiver acks.
	waiters map[string]chan struct{}
	peers   map[string]peerState
	pings   map[string][]chan struct{}
	control *controlSub

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New returns the coordinator of namespace ns over the registry and
// messaging slots. cfg is validated and completed with defaults. It starts
// the presence refresher; call Close when done.
func New(ns string, cfg Config, reg, msg Slot, opts ...Option) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("registry config of namespace %q: %w", ns, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	c := &Coordinator{ns: ns, cfg: cfg.WithDefaults(ns), reg: reg, msg: msg, log: slog.Default(), now: time.Now,
		owner: hex.EncodeToString(b[:]), receivers: map[string]bool{}, waiters: map[string]chan struct{}{},
		peers: map[string]peerState{}, pings: map[string][]chan struct{}{}, stop: make(chan struct{}), done: make(chan struct{})}
	for _, o := range opts {
		o(c)
	}
	if err := c.setupMutant(ns); err != nil {
		return nil, err
	}
	c.log = c.log.With("namespace", ns, "registry_owner", c.owner)
	now := func() time.Time { return c.now() }
	c.records = &index[record]{prefix: c.recordPrefix(), versionKey: c.cfg.KeyPrefix + versionPart + recordPart,
		maxAge: recordIndexMaxAge, decode: c.decode, now: now}
	c.presence = &index[presence]{prefix: c.presencePrefix(), versionKey: c.cfg.KeyPrefix + versionPart + presencePart,
		maxAge: c.cfg.PresenceTTL / 3, decode: c.decodePresence, now: now}
	go c.refresh()
	return c, nil
}

// Config returns the coordinator's config, defaults filled in.
func (c *Coordinator) Config() Config { return c.cfg }

// Close stops the presence refresher and the control subscription. Receive
// streams still open keep working until they end.
func (c *Coordinator) Close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.done
		c.mu.Lock()
		ctl := c.control
		c.control = nil
		c.mu.Unlock()
		if ctl != nil {
			ctl.cancel()
		}
	})
}

// outgoing returns ctx with the namespace and the caller's request id as
// outgoing metadata for a slot call.
func (c *Coordinator) outgoing(ctx context.Context) context.Context {
	md := metadata.Pairs(namespaceKey, c.ns)
	if in, ok := metadata.FromIncomingContext(ctx); ok {
		if v := in.Get(requestIDKey); len(v) > 0 {
			md.Set(requestIDKey, v[0])
		}
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// kvSlot is a call context on the registry slot.
type kvSlot struct {
	kv   keyvaluev1.KeyValueClient
	desc *lifecyclev1.DescribeResponse
	ctx  context.Context
}

func (c *Coordinator) registrySlot(ctx context.Context) (kvSlot, error) {
	conn, desc, err := c.reg()
	if err != nil {
		return kvSlot{}, err
	}
	return kvSlot{kv: keyvaluev1.NewKeyValueClient(conn), desc: desc, ctx: c.outgoing(ctx)}, nil
}

func (s kvSlot) maxPage() int32 {
	if n := s.desc.GetLimits().GetMaxPageSize(); n > 0 && n < MaxPageSize {
		return int32(n)
	}
	return MaxPageSize
}

func (s kvSlot) declares(n capability.Name) bool { return declares(s.desc, n) }

func declares(d *lifecyclev1.DescribeResponse, n capability.Name) bool {
	return capability.Declared(d).Has(n)
}

// slotError turns a slot call's error into the status the caller gets: the
// slot's code, with a message that says which slot failed.
func slotError(slot, op string, err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	code := st.Code()
	if code == codes.Unknown {
		code = codes.Unavailable
	}
	return status.Errorf(code, "%s slot: %s: %s", slot, op, st.Message())
}

// get reads and decodes a record; nil when there is none.
func (c *Coordinator) get(s kvSlot, key string) (*registryv1.Identity, error) {
	resp, err := s.kv.Get(s.ctx, &keyvaluev1.GetRequest{Key: key})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, slotError("registry", "get record", err)
	}
	rec := &registryv1.Identity{}
	if err := proto.Unmarshal(resp.GetValue(), rec); err != nil {
		c.log.Warn("registry record does not decode; treated as absent", "key", key, "error", err.Error())
		return nil, nil
	}
	return rec, nil
}

// live reports whether a record has not expired at now.
func live(rec *registryv1.Identity, now time.Time) bool {
	return rec.GetExpiresAt().AsTime().After(now)
}

// visible reports whether a record read by a scan (Enumerate, Multicast's
// targets, the quota) counts: it has not expired, unless a mutant says so.
func (c *Coordinator) visible(rec *registryv1.Identity, now time.Time) bool {
	return live(rec, now) || c.has(mutantExpiredEnumerated)
}

// Register implements prism.registry.v1.Registry/Register.
func (c *Coordinator) Register(ctx context.Context, req *registryv1.RegisterRequest) (*registryv1.RegisterResponse, error) {
	id := req.GetIdentity()
	if err := validateIdentity("identity", id); err != nil {
		return nil, err
	}
	if req.GetTtl() == nil {
		return nil, status.Error(codes.InvalidArgument, "ttl: is required (how long the registration lives without a heartbeat)")
	}
	if err := req.GetTtl().CheckValid(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "ttl: %v", err)
	}
	ttl := req.GetTtl().AsDuration()
	if ttl < 10*time.Millisecond || ttl > c.cfg.MaxTTL {
		return nil, status.Errorf(codes.InvalidArgument, "ttl: must be 10ms to %v, got %v", c.cfg.MaxTTL, ttl)
	}
	if err := validateMetadata(req.GetMetadata(), c.cfg.Schema); err != nil {
		return nil, err
	}
	s, err := c.registrySlot(ctx)
	if err != nil {
		return nil, err
	}
	key := c.recordKey(id)
	// The longest key the registry writes for an identity is its presence key.
	if max := s.desc.GetLimits().GetMaxKeyBytes(); max > 0 && int64(len(c.presenceOf(id))+32) > max {
		return nil, status.Errorf(codes.InvalidArgument, "identity: too long for the registry slot's key limit of %d bytes once escaped", max)
	}
	now := c.now()
	old, err := c.get(s, key)
	if err != nil {
		return nil, err
	}
	isLive := old != nil && (live(old, now) || c.has(mutantExpiredRegisterRefused))
	if isLive && !req.GetReplace() && !c.has(mutantReplaceIgnored) {
		return nil, status.Errorf(codes.AlreadyExists, "identity %q is already registered (until %s); register with replace to renew it",
			id, old.GetExpiresAt().AsTime().Format(time.RFC3339Nano))
	}
	if !isLive && c.cfg.MaxIdentities > 0 {
		if err := c.checkQuota(s, key, now); err != nil {
			return nil, err
		}
	}
	rec := &registryv1.Identity{Identity: id, Metadata: req.GetMetadata(), RegisteredAt: timestamppb.New(now),
		ExpiresAt: timestamppb.New(now.Add(ttl))}
	if isLive || (old != nil && c.has(mutantExpiredHeartbeatRevives)) {
		rec.RegisteredAt = old.GetRegisteredAt()
	}
	if c.has(mutantHeartbeatExpiresEarly) {
		rec.ExpiresAt = timestamppb.New(rec.GetRegisteredAt().AsTime().Add(ttl))
	}
	b, err := proto.Marshal(rec)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "metadata: %v", err)
	}
	if max := s.desc.GetLimits().GetMaxValueBytes(); max > 0 && int64(len(b)) > max {
		return nil, status.Errorf(codes.InvalidArgument, "metadata: the record of %d bytes exceeds the registry slot's value limit of %d", len(b), max)
	}
	if _, err := s.kv.Set(s.ctx, &keyvaluev1.SetRequest{Key: key, Value: b, Ttl: durationpb.New(ttl + c.cfg.ExpiryGrace)}); err != nil {
		return nil, slotError("registry", "set record", err)
	}
	if _, err := c.records.changed(s); err != nil {
		return nil, err
	}
	return &registryv1.RegisterResponse{RegisteredAt: rec.GetRegisteredAt(), ExpiresAt: rec.GetExpiresAt()}, nil
}

// checkQuota admits one more live identity, or answers ResourceExhausted.
// Count is an upper bound of the live records (expired ones linger for
// ExpiryGrace), so only a namespace near its quota reads the index (which
// every Register renews: a bulk registration must not load it each time).
func (c *Coordinator) checkQuota(s kvSlot, key string, now time.Time) error {
	n, err := s.kv.Count(s.ctx, &keyvaluev1.CountRequest{Prefix: c.recordPrefix()})
	if err != nil {
		return slotError("registry", "count records", err)
	}
	if n.GetCount() < c.cfg.MaxIdentities {
		return nil
	}
	v, err := c.records.read(s)
	if err != nil {
		return err
	}
	var count int64
	for i, r := range v.vals {
		if v.keys[i] != key && (live(r.rec, now) || c.has(mutantQuotaCountsExpired)) {
			count++
		}
	}
	if count >= c.cfg.MaxIdentities {
		return status.Errorf(codes.ResourceExhausted, "namespace %q holds %d live identities, its quota (max_identities %d)", c.ns, count, c.cfg.MaxIdentities)
	}
	return nil
}

// record is an indexed record, decoded (its bytes are the view's raws),
// and bare: the encoded Identity without its metadata, as Enumerate
// without include_metadata sends it. Shared: never modify them.
type record struct {
	rec  *registryv1.Identity
	bare []byte
}

// recordIndexMaxAge is how long a copy of the records serves while the
// version key does not change.
const recordIndexMaxAge = 30 * time.Second

// decode decodes a record read by a scan.
func (c *Coordinator) decode(e *keyvaluev1.Entry) (record, bool) {
	rec := &registryv1.Identity{}
	if err := proto.Unmarshal(e.GetValue(), rec); err != nil || rec.GetIdentity() == "" {
		c.log.Warn("registry record does not decode; skipped", "key", e.GetKey())
		return record{}, false
	}
	bare, err := proto.Marshal(&registryv1.Identity{Identity: rec.GetIdentity(), RegisteredAt: rec.GetRegisteredAt(), ExpiresAt: rec.GetExpiresAt()})
	if err != nil {
		c.log.Warn("registry record does not encode; skipped", "key", e.GetKey())
		return record{}, false
	}
	return record{rec: rec, bare: bare}, true
}

// Unregister implements prism.registry.v1.Registry/Unregister. It is
// idempotent; existed tells whether a live registration was removed.
func (c *Coordinator) Unregister(ctx context.Context, req *registryv1.UnregisterRequest) (*registryv1.UnregisterResponse, error) {
	id := req.GetIdentity()
	if err := validateIdentity("identity", id); err != nil {
		return nil, err
	}
	s, err := c.registrySlot(ctx)
	if err != nil {
		return nil, err
	}
	key := c.recordKey(id)
	old, err := c.get(s, key)
	if err != nil {
		return nil, err
	}
	if _, err := s.kv.Delete(s.ctx, &keyvaluev1.DeleteRequest{Key: key}); err != nil {
		return nil, slotError("registry", "delete record", err)
	}
	if _, err := c.records.changed(s); err != nil {
		return nil, err
	}
	c.deleteDurableInbox(ctx, s, id)
	return &registryv1.UnregisterResponse{Existed: old != nil && (live(old, c.now()) || c.has(mutantExpiredUnregisterExisted))}, nil
}

// compile validates a filter (with the mutants' defects applied).
func (c *Coordinator) compile(f *registryv1.Filter) (*filter.Compiled, error) {
	f = c.mutateFilter(f)
	cf, err := filter.CompileWithin(f, filter.Size{Nodes: c.cfg.FilterMaxNodes, Bytes: c.cfg.FilterMaxBytes})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return cf, nil
}

// cursorTag starts every Enumerate cursor, so its format can change. The
// rest is the record key of the page's last identity: the next page starts
// after it.
const cursorTag = "e2."

func encodeCursor(key string) string {
	return cursorTag + base64.RawURLEncoding.EncodeToString([]byte(key))
}

func decodeCursor(cur string) (string, error) {
	if cur == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(cur, cursorTag))
	if !strings.HasPrefix(cur, cursorTag) || err != nil || len(raw) == 0 {
		return "", status.Error(codes.InvalidArgument, "cursor: not a cursor this registry issued")
	}
	return string(raw), nil
}

// Enumerate implements prism.registry.v1.Registry/Enumerate. It reads the
// records' index (one read of its version key when nothing changed) and
// walks it in key order; the cursor is the last key returned, so every
// identity present for the whole walk is returned exactly once.
func (c *Coordinator) Enumerate(ctx context.Context, req *registryv1.EnumerateRequest) (*registryv1.EnumerateResponse, error) {
	return c.enumerate(ctx, req, false)
}

// enumerate is Enumerate; with encoded, a page is the matching records'
// bytes as they are in the slot (each is an encoded Identity), or without
// metadata their bare encoding from the index, set as the response's
// unknown fields so that marshalling it writes them as field 1
// (identities) without encoding them again: the response is for the wire
// only (its Identities field stays empty).
func (c *Coordinator) enumerate(ctx context.Context, req *registryv1.EnumerateRequest, encoded bool) (*registryv1.EnumerateResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > MaxPageSize:
		return nil, status.Errorf(codes.InvalidArgument, "page_size: must be 0 to %d, got %d", MaxPageSize, size)
	case size == 0:
		size = DefaultPageSize
	}
	cf, err := c.compile(req.GetFilter())
	if err != nil {
		return nil, err
	}
	start, err := decodeCursor(req.GetCursor())
	if err != nil {
		return nil, err
	}
	s, err := c.registrySlot(ctx)
	if err != nil {
		return nil, err
	}
	v, err := c.records.read(s)
	if err != nil {
		return nil, err
	}
	now := c.now()
	out := &registryv1.EnumerateResponse{}
	var raw []byte
	from, found, last := 0, 0, ""
	if start != "" {
		from = v.after(start)
	}
	for i, r := range v.vals {
		if !c.visible(r.rec, now) || !c.match(cf, r.rec) {
			continue
		}
		out.TotalCount++
		switch {
		case i < from:
			continue
		case found == size:
			out.NextCursor = encodeCursor(last)
			continue
		}
		found++
		last = v.keys[i]
		switch {
		case req.GetIncludeMetadata() && encoded:
			raw = protowire.AppendTag(raw, 1, protowire.BytesType)
			raw = protowire.AppendBytes(raw, v.raws[i])
		case encoded:
			raw = protowire.AppendTag(raw, 1, protowire.BytesType)
			raw = protowire.AppendBytes(raw, r.bare)
		case req.GetIncludeMetadata():
			out.Identities = append(out.Identities, proto.Clone(r.rec).(*registryv1.Identity))
		default:
			out.Identities = append(out.Identities, &registryv1.Identity{Identity: r.rec.GetIdentity(),
				RegisteredAt: r.rec.GetRegisteredAt(), ExpiresAt: r.rec.GetExpiresAt()})
		}
	}
	if len(raw) > 0 {
		out.ProtoReflect().SetUnknown(raw)
	}
	return out, nil
}

// match reports whether a record's metadata satisfies cf (as a mutant
// sees it, in a prism_mutants build).
func (c *Coordinator) match(cf *filter.Compiled, rec *registryv1.Identity) bool {
	return cf.Match(c.mutateMetadata(rec.GetMetadata()))
}

// targets resolves the identities a filter selects now, in key order.
func (c *Coordinator) targets(s kvSlot, cf *filter.Compiled) ([]string, error) {
	v, err := c.records.read(s)
	if err != nil {
		return nil, err
	}
	now := c.now()
	var ids []string
	for _, r := range v.vals {
		if c.visible(r.rec, now) && c.match(cf, r.rec) {
			ids = append(ids, r.rec.GetIdentity())
		}
	}
	return ids, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

var errClosed = errors.New("registry coordinator closed")
