package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// Metadata the coordinator adds to every inbox message; a caller's
// multicast metadata may not use the prefix.
const (
	reservedPrefix = "prism-registry."
	mdMulticast    = reservedPrefix + "multicast"
	mdTarget       = reservedPrefix + "to"
	mdDeadline     = reservedPrefix + "deadline"
	mdKind         = reservedPrefix + "kind"
	mdFrom         = reservedPrefix + "from"
)

// Multicast defaults and bounds.
const (
	// DefaultMulticastTimeout bounds a multicast whose call has no deadline
	// and whose request gives no timeout.
	DefaultMulticastTimeout = 30 * time.Second
	// MaxMulticastTimeout is the longest timeout a request may give.
	MaxMulticastTimeout = 10 * time.Minute
	// maxBatch is the most messages in one PublishBatch of a fan-out: small
	// enough that one slow inbox holds back few others.
	maxBatch = 64
	// batchBytes bounds the payload bytes of one PublishBatch.
	batchBytes = 4 << 20
	// pingTimeout bounds the wait for another proxy's answer on the
	// messaging slot when its receivers are targeted.
	pingTimeout = 500 * time.Millisecond
	// answerMargin is the most of the caller's deadline a multicast keeps
	// for sending its answer back.
	answerMargin = 250 * time.Millisecond
	// perTargetPresence is the most targets whose presence keys are looked
	// up one by one in the presence index (and whose durable inbox marks
	// are read key by key); more are checked with one walk over all.
	perTargetPresence = 16
)

// psSlot is a call context on the messaging slot.
type psSlot struct {
	ps   pubsubv1.PubSubClient
	desc *lifecyclev1.DescribeResponse
	ctx  context.Context
}

func (c *Coordinator) messagingSlot(ctx context.Context) (psSlot, error) {
	conn, desc, err := c.msg()
	if err != nil {
		return psSlot{}, err
	}
	return psSlot{ps: pubsubv1.NewPubSubClient(conn), desc: desc, ctx: c.outgoing(ctx)}, nil
}

func (s psSlot) maxTopic() int {
	if n := s.desc.GetLimits().GetMaxTopicBytes(); n > 0 {
		return int(n)
	}
	return sdk.DefaultMaxTopicBytes
}

func (s psSlot) durable() bool { return declares(s.desc, capability.PubSubDurable) }

// --- presence -------------------------------------------------------------

// addReceiver writes a new presence key for identity id and keeps it
// refreshed until removeReceiver.
func (c *Coordinator) addReceiver(s kvSlot, id string) (string, error) {
	key := c.presenceOf(id) + c.owner + "." + strconv.FormatUint(c.seq.Add(1), 36)
	_, err := s.kv.Set(s.ctx, &keyvaluev1.SetRequest{Key: key, Value: []byte(c.owner), Ttl: durationpb.New(c.cfg.PresenceTTL)})
	if err != nil {
		return "", slotError("registry", "write presence", err)
	}
	c.mu.Lock()
	c.receivers[key] = true
	c.mu.Unlock()
	if _, err := c.presence.changed(s); err != nil {
		c.removeReceiver(key)
		return "", err
	}
	return key, nil
}

// removeReceiver stops refreshing a presence key and deletes it.
func (c *Coordinator) removeReceiver(key string) {
	c.mu.Lock()
	delete(c.receivers, key)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.registrySlot(ctx)
	if err != nil {
		return // the key expires after PresenceTTL
	}
	if _, err := s.kv.Delete(s.ctx, &keyvaluev1.DeleteRequest{Key: key}); err != nil {
		c.log.Warn("delete presence key; it expires by itself", "error", err.Error())
		return
	}
	if _, err := c.presence.changed(s); err != nil {
		c.log.Warn("a removed receiver counts as live for at most a third of presence_ttl", "error", err.Error())
	}
}

// refresh renews the presence keys of the open Receive streams every third
// of PresenceTTL, and keeps the control subscription open while there are
// any, so other proxies can tell these receivers are reachable.
func (c *Coordinator) refresh() {
	defer close(c.done)
	t := time.NewTicker(c.cfg.PresenceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		keys := make([]string, 0, len(c.receivers))
		for k := range c.receivers {
			keys = append(keys, k)
		}
		c.mu.Unlock()
		if len(keys) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PresenceTTL/3)
		if err := c.ensureControl(ctx); err != nil {
			c.log.Warn("open control subscription", "error", err.Error())
		}
		c.refreshKeys(ctx, keys)
		cancel()
		// A stream that ended while its key was being refreshed must not
		// leave the key behind.
		var gone []string
		c.mu.Lock()
		for _, k := range keys {
			if !c.receivers[k] {
				gone = append(gone, k)
			}
		}
		c.mu.Unlock()
		for _, k := range gone {
			c.removeReceiver(k)
		}
	}
}

func (c *Coordinator) refreshKeys(ctx context.Context, keys []string) {
	s, err := c.registrySlot(ctx)
	if err != nil {
		c.log.Warn("refresh presence", "error", err.Error())
		return
	}
	ttl := durationpb.New(c.cfg.PresenceTTL)
	if s.declares(capability.KeyValueBatch) {
		size := 500
		if n := s.desc.GetLimits().GetMaxBatchSize(); n > 0 && n < int64(size) {
			size = int(n)
		}
		for i := 0; i < len(keys); i += size {
			var entries []*keyvaluev1.Entry
			for _, k := range keys[i:min(i+size, len(keys))] {
				entries = append(entries, &keyvaluev1.Entry{Key: k, Value: []byte(c.owner)})
			}
			if _, err := s.kv.BatchSet(s.ctx, &keyvaluev1.BatchSetRequest{Entries: entries, Ttl: ttl}); err != nil {
				c.log.Warn("refresh presence", "error", err.Error())
			}
		}
		return
	}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, k := range keys {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := s.kv.Set(s.ctx, &keyvaluev1.SetRequest{Key: k, Value: []byte(c.owner), Ttl: ttl}); err != nil {
				c.log.Warn("refresh presence", "error", err.Error())
			}
		}()
	}
	wg.Wait()
}

// presence is an indexed presence key: whose receiver, and which
// coordinator holds it.
type presence struct {
	id, owner string
}

// decodePresence parses a presence key and its value.
func (c *Coordinator) decodePresence(e *keyvaluev1.Entry) (presence, bool) {
	rest := strings.TrimPrefix(e.GetKey(), c.presencePrefix())
	esc, _, ok := strings.Cut(rest, "/")
	if !ok {
		return presence{}, false
	}
	id, err := unescape(esc)
	return presence{id: id, owner: string(e.GetValue())}, err == nil
}

// receiversOf returns, for each identity in ids, the owners of its
// presence keys in v.
func (c *Coordinator) receiversOf(v *view[presence], ids []string) map[string][]string {
	out := map[string][]string{}
	if len(ids) <= perTargetPresence {
		// A few targets: their keys, found in key order.
		for _, id := range ids {
			p := c.presenceOf(id)
			for i := v.after(p); i < len(v.keys) && strings.HasPrefix(v.keys[i], p); i++ {
				out[id] = append(out[id], v.vals[i].owner)
			}
		}
		return out
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	for _, p := range v.vals {
		if want[p.id] {
			out[p.id] = append(out[p.id], p.owner)
		}
	}
	return out
}

// --- peers: is another proxy's receiver reachable on our messaging slot? ---

// peerState caches whether another coordinator answered a ping.
type peerState struct {
	reachable bool
	until     time.Time
}

// controlSub is this coordinator's subscription to its own control topic,
// where other coordinators ping it and it answers.
type controlSub struct {
	cancel context.CancelFunc
	ended  chan struct{}
}

func (s *controlSub) alive() bool {
	select {
	case <-s.ended:
		return false
	default:
		return true
	}
}

// ensureControl opens the control subscription unless it is open.
func (c *Coordinator) ensureControl(ctx context.Context) error {
	c.mu.Lock()
	if c.control != nil && c.control.alive() {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	select {
	case <-c.stop:
		return status.Error(codes.Unavailable, errClosed.Error())
	default:
	}
	ms, err := c.messagingSlot(context.Background())
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ms.ctx)
	stream, err := subscribe(ctx, sctx, ms.ps, &pubsubv1.Subscription{Topic: c.peerTopic(c.owner)})
	if err != nil {
		cancel()
		return slotError("messaging", "subscribe to the control topic", err)
	}
	ctl := &controlSub{cancel: cancel, ended: make(chan struct{})}
	c.mu.Lock()
	if c.control != nil && c.control.alive() {
		c.mu.Unlock()
		cancel() // another call opened one meanwhile
		return nil
	}
	c.control = ctl
	c.mu.Unlock()
	go func() {
		defer close(ctl.ended)
		defer cancel()
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			m := ev.GetMessage()
			if m == nil {
				continue
			}
			from := m.GetMetadata()[mdFrom]
			switch m.GetMetadata()[mdKind] {
			case "ping":
				go c.pong(from)
			case "pong":
				c.mu.Lock()
				waiters := c.pings[from]
				delete(c.pings, from)
				c.peers[from] = peerState{reachable: true, until: c.now().Add(c.cfg.PresenceTTL)}
				c.mu.Unlock()
				for _, w := range waiters {
					close(w)
				}
			}
		}
	}()
	return nil
}

func (c *Coordinator) pong(to string) {
	if to == "" || len(to) > 64 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ms, err := c.messagingSlot(ctx)
	if err != nil {
		return
	}
	_, _ = ms.ps.Publish(ms.ctx, &pubsubv1.PublishRequest{Topic: c.peerTopic(to),
		Metadata: map[string]string{mdKind: "pong", mdFrom: c.owner}})
}

// reachable tells which owners' receivers this coordinator can reach on its
// messaging slot: itself, and every other coordinator that answers a ping
// there within pingTimeout (answers are cached for PresenceTTL; silence for
// a third of it). Another proxy whose messaging slot is a store of its own
// (memstore) never answers, so its receivers never count as live here.
func (c *Coordinator) reachable(ctx context.Context, ms psSlot, owners map[string]bool) map[string]bool {
	out := map[string]bool{}
	now := c.now()
	var ask []string
	c.mu.Lock()
	for o := range owners {
		switch st, ok := c.peers[o]; {
		case o == c.owner:
			out[o] = true
		case ok && now.Before(st.until):
			out[o] = st.reachable
		default:
			ask = append(ask, o)
		}
	}
	c.mu.Unlock()
	if len(ask) == 0 {
		return out
	}
	if err := c.ensureControl(ctx); err != nil {
		c.log.Warn("cannot ping other proxies' receivers", "error", err.Error())
		return out
	}
	chans := make(map[string]chan struct{}, len(ask))
	c.mu.Lock()
	for _, o := range ask {
		ch := make(chan struct{})
		chans[o] = ch
		c.pings[o] = append(c.pings[o], ch)
	}
	c.mu.Unlock()
	for _, o := range ask {
		_, err := ms.ps.Publish(ms.ctx, &pubsubv1.PublishRequest{Topic: c.peerTopic(o),
			Metadata: map[string]string{mdKind: "ping", mdFrom: c.owner}})
		if err != nil {
			c.log.Warn("ping another proxy", "owner", o, "error", err.Error())
		}
	}
	t := time.NewTimer(pingTimeout)
	defer t.Stop()
	for _, o := range ask {
		select {
		case <-chans[o]:
			out[o] = true
		case <-t.C:
		case <-ctx.Done():
		}
	}
	c.mu.Lock()
	for _, o := range ask {
		if !out[o] {
			c.peers[o] = peerState{until: c.now().Add(c.cfg.PresenceTTL / 3)}
		}
	}
	c.mu.Unlock()
	return out
}

// --- multicast ------------------------------------------------------------

// Multicast implements prism.registry.v1.Registry/Multicast.
func (c *Coordinator) Multicast(ctx context.Context, req *registryv1.MulticastRequest) (*registryv1.MulticastResponse, error) {
	start := c.now()
	alo := false
	switch req.GetDelivery() {
	case registryv1.Delivery_DELIVERY_UNSPECIFIED, registryv1.Delivery_DELIVERY_AT_MOST_ONCE:
	case registryv1.Delivery_DELIVERY_AT_LEAST_ONCE:
		alo = true
	default:
		return nil, status.Errorf(codes.InvalidArgument, "delivery: %d is not a delivery mode", req.GetDelivery())
	}
	deadline := start.Add(DefaultMulticastTimeout)
	if dl, ok := ctx.Deadline(); ok && !c.has(mutantFanoutIgnoresDeadline) {
		// Leave time to answer before the caller gives up: a quarter of
		// what is left, at most answerMargin, so that the answer makes it
		// back also when the proxy's machine is loaded.
		deadline = dl.Add(-min(answerMargin, time.Until(dl)/4))
	}
	if t := req.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() <= 0 || t.AsDuration() > MaxMulticastTimeout {
			return nil, status.Errorf(codes.InvalidArgument, "timeout: must be positive and at most %v", MaxMulticastTimeout)
		}
		if d := start.Add(t.AsDuration()); d.Before(deadline) {
			deadline = d
		}
	}
	for k := range req.GetMetadata() {
		if strings.HasPrefix(k, reservedPrefix) {
			return nil, status.Errorf(codes.InvalidArgument, "metadata: key %q uses the reserved prefix %q", k, reservedPrefix)
		}
	}
	probe := c.inboxMetadata(req.GetMetadata(), "", strings.Repeat("x", MaxIdentityBytes), deadline.UTC().Format(time.RFC3339Nano))
	probe[mdMulticast] = strings.Repeat("x", 32)
	if err := sdk.ValidateMetadata("metadata", probe); err != nil {
		return nil, err
	}
	cf, err := c.compile(req.GetFilter())
	if err != nil {
		return nil, err
	}
	ms, err := c.messagingSlot(ctx)
	if err != nil {
		return nil, err
	}
	if alo && !ms.durable() {
		return nil, status.Errorf(codes.FailedPrecondition, "delivery: at-least-once needs a messaging slot that declares %s; namespace %q's plugin %s does not",
			capability.PubSubDurable, c.ns, ms.desc.GetName())
	}
	if max := ms.desc.GetLimits().GetMaxPayloadBytes(); max > 0 && int64(len(req.GetPayload())) > max {
		return nil, status.Errorf(codes.InvalidArgument, "payload: %d bytes exceeds the messaging slot's limit of %d", len(req.GetPayload()), max)
	}
	rs, err := c.registrySlot(ctx)
	if err != nil {
		return nil, err
	}
	// At-most-once needs the presence index too: read it while the
	// targets are resolved.
	type presenceRead struct {
		v   *view[presence]
		err error
	}
	pch := make(chan presenceRead, 1)
	if !alo {
		go func() {
			v, err := c.presence.read(rs)
			pch <- presenceRead{v, err}
		}()
	}
	ids, err := c.targets(rs, cf)
	if err != nil {
		return nil, err
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	mc := hex.EncodeToString(b[:])
	out := &registryv1.MulticastResponse{MulticastId: mc, TargetCount: int64(len(ids))}
	statuses := make([]*registryv1.TargetStatus, len(ids))

	parent := ctx
	if c.has(mutantFanoutIgnoresDeadline) {
		parent = context.Background()
	}
	mctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	ms.ctx = c.outgoing(mctx)
	var send []int
	if alo {
		send = c.ensureDurableInboxes(mctx, rs, ms, ids, statuses)
		wake := make(chan struct{}, 1)
		c.mu.Lock()
		c.waiters[mc] = wake
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.waiters, mc)
			c.mu.Unlock()
		}()
	} else {
		pr := <-pch
		if pr.err != nil {
			return nil, pr.err
		}
		live := c.liveReceivers(mctx, pr.v, ms, ids)
		for i, id := range ids {
			if live[id] || c.has(mutantDeliveredNoReceiver) {
				send = append(send, i)
				continue
			}
			statuses[i] = &registryv1.TargetStatus{Identity: id, Status: registryv1.TargetStatus_STATUS_FAILED,
				Error: "no receiver: the identity has no open Receive stream reachable through this namespace's messaging slot"}
		}
	}
	c.publish(mctx, ms, mc, ids, send, req, alo, deadline, statuses)
	if alo {
		c.awaitAcks(ctx, rs, mc, ids, statuses, deadline)
	}
	for i, st := range statuses {
		if st == nil {
			st = &registryv1.TargetStatus{Identity: ids[i], Status: registryv1.TargetStatus_STATUS_TIMEOUT,
				Error: "not acknowledged within the timeout"}
			statuses[i] = st
		}
		switch st.GetStatus() {
		case registryv1.TargetStatus_STATUS_DELIVERED:
			out.DeliveredCount++
		default:
			out.FailedCount++
		}
	}
	out.Statuses = statuses
	return out, nil
}

// liveReceivers returns the identities among ids with a receiver in the
// presence index v that this coordinator can reach.
func (c *Coordinator) liveReceivers(ctx context.Context, v *view[presence], ms psSlot, ids []string) map[string]bool {
	byID := c.receiversOf(v, ids)
	owners := map[string]bool{}
	for _, os := range byID {
		for _, o := range os {
			owners[o] = true
		}
	}
	reach := c.reachable(ctx, ms, owners)
	live := map[string]bool{}
	for id, os := range byID {
		for _, o := range os {
			if reach[o] {
				live[id] = true
				break
			}
		}
	}
	return live
}

// inboxMetadata is the metadata of one inbox message.
// deadline is the at-least-once deadline in RFC 3339 ("" for at-most-once).
func (c *Coordinator) inboxMetadata(user map[string]string, mc, id, deadline string) map[string]string {
	md := make(map[string]string, len(user)+4)
	for k, v := range user {
		md[k] = v
	}
	md[mdMulticast] = mc
	md[mdTarget] = id
	if deadline != "" {
		md[mdDeadline] = deadline
	}
	return md
}

// publish sends the message to the inbox of each target in send, in batches
// with at most MaxFanout calls in flight, and fills their statuses:
// DELIVERED (at-most-once, accepted by the messaging slot), nil
// (at-least-once, awaiting the acknowledgement), FAILED or TIMEOUT. Nothing
// is retried, so nothing is sent twice.
func (c *Coordinator) publish(ctx context.Context, ms psSlot, mc string, ids []string, send []int, req *registryv1.MulticastRequest,
	alo bool, deadline time.Time, statuses []*registryv1.TargetStatus) {
	size := max(1, min(maxBatch, batchBytes/(len(req.GetPayload())+1024)))
	if n := ms.desc.GetLimits().GetMaxBatchSize(); n > 0 && int64(size) > n {
		size = int(n)
	}
	maxTopic := ms.maxTopic()
	dl := ""
	if alo {
		dl = deadline.UTC().Format(time.RFC3339Nano)
	}
	sem := make(chan struct{}, c.cfg.MaxFanout)
	var wg sync.WaitGroup
	mark := func(part []int, st registryv1.TargetStatus_Status, msg string) {
		for _, i := range part {
			statuses[i] = &registryv1.TargetStatus{Identity: ids[i], Status: st, Error: msg}
		}
	}
	for at := 0; at < len(send); at += size {
		part := send[at:min(at+size, len(send))]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			mark(send[at:], registryv1.TargetStatus_STATUS_TIMEOUT, "the multicast's deadline passed before the message was sent")
			at = len(send)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			msgs := make([]*pubsubv1.OutgoingMessage, len(part))
			for j, i := range part {
				msgs[j] = &pubsubv1.OutgoingMessage{Topic: c.inboxTopic(ids[i], alo, maxTopic), Payload: req.GetPayload(),
					Metadata: c.inboxMetadata(req.GetMetadata(), mc, ids[i], dl)}
			}
			_, err := ms.ps.PublishBatch(ms.ctx, &pubsubv1.PublishBatchRequest{Messages: msgs})
			if err == nil && !alo && c.has(mutantMulticastTwice) {
				_, err = ms.ps.PublishBatch(ms.ctx, &pubsubv1.PublishBatchRequest{Messages: msgs})
			}
			if err == nil && alo {
				// Ring each target's at-most-once inbox, so a live receiver
				// that has not opened its durable inbox yet opens it now.
				bells := make([]*pubsubv1.OutgoingMessage, len(part))
				for j, i := range part {
					bells[j] = &pubsubv1.OutgoingMessage{Topic: c.inboxTopic(ids[i], false, maxTopic),
						Metadata: map[string]string{mdKind: kindDoorbell, mdTarget: ids[i]}}
				}
				if _, berr := ms.ps.PublishBatch(ms.ctx, &pubsubv1.PublishBatchRequest{Messages: bells}); berr != nil {
					c.log.Warn("ring inboxes", "error", berr.Error())
				}
			}
			switch {
			case err == nil && alo:
				// awaiting the acknowledgement
			case err == nil:
				mark(part, registryv1.TargetStatus_STATUS_DELIVERED, "")
			case ctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded:
				mark(part, registryv1.TargetStatus_STATUS_TIMEOUT, slotError("messaging", "publish", err).Error())
			default:
				mark(part, registryv1.TargetStatus_STATUS_FAILED, slotError("messaging", "publish", err).Error())
			}
		}()
	}
	wg.Wait()
}

// awaitAcks waits until every target whose message was published (status
// nil) has acknowledged it or the deadline passes. Acknowledgements are
// keys in the registry slot, so a receiver on any proxy counts; a receiver
// on this proxy also wakes the wait at once.
func (c *Coordinator) awaitAcks(ctx context.Context, rs kvSlot, mc string, ids []string, statuses []*registryv1.TargetStatus, deadline time.Time) {
	pending := map[string]int{}
	for i, st := range statuses {
		if st == nil {
			pending[ids[i]] = i
		}
	}
	c.mu.Lock()
	wake := c.waiters[mc]
	c.mu.Unlock()
	prefix := c.ackPrefix(mc)
	backoff := 5 * time.Millisecond
	for len(pending) > 0 {
		cursor := ""
		for {
			resp, err := rs.kv.Scan(rs.ctx, &keyvaluev1.ScanRequest{Prefix: prefix, PageSize: rs.maxPage(), Cursor: cursor})
			if err != nil {
				c.log.Warn("read acknowledgements", "multicast", mc, "error", err.Error())
				break
			}
			for _, e := range resp.GetEntries() {
				id, err := unescape(strings.TrimPrefix(e.GetKey(), prefix))
				if i, ok := pending[id]; err == nil && ok {
					statuses[i] = &registryv1.TargetStatus{Identity: id, Status: registryv1.TargetStatus_STATUS_DELIVERED}
					delete(pending, id)
				}
			}
			if cursor = resp.GetNextCursor(); cursor == "" {
				break
			}
		}
		left := time.Until(deadline)
		if len(pending) == 0 || left <= 0 {
			return
		}
		t := time.NewTimer(min(backoff, left))
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

// kindDoorbell marks a message on an at-most-once inbox that tells its
// receiver to open the identity's durable inbox.
const kindDoorbell = "doorbell"

// ensureDurableInboxes makes sure every target has its durable inbox: a
// durable consumer "inbox" of its at-least-once topic, created (and marked
// in the registry slot) before anything is published to it, so it keeps
// the message for the receiver whenever it comes. Durable inboxes exist only
// for identities at-least-once multicasts target (a messaging backend bounds
// its durable consumers: NATS allows 1 000 per stream by default).
// Unregister deletes them. It returns the targets to publish to; the others
// get FAILED.
func (c *Coordinator) ensureDurableInboxes(ctx context.Context, rs kvSlot, ms psSlot, ids []string, statuses []*registryv1.TargetStatus) []int {
	rs.ctx = c.outgoing(ctx)
	have := map[string]bool{}
	if len(ids) > perTargetPresence {
		cursor := ""
		for {
			resp, err := rs.kv.Scan(rs.ctx, &keyvaluev1.ScanRequest{Prefix: c.cfg.KeyPrefix + durablePart, PageSize: rs.maxPage(), Cursor: cursor})
			if err != nil {
				break // create them all; creating an existing one is harmless
			}
			for _, e := range resp.GetEntries() {
				if id, err := unescape(strings.TrimPrefix(e.GetKey(), c.cfg.KeyPrefix+durablePart)); err == nil {
					have[id] = true
				}
			}
			if cursor = resp.GetNextCursor(); cursor == "" {
				break
			}
		}
	} else {
		for _, id := range ids {
			if r, err := rs.kv.Exists(rs.ctx, &keyvaluev1.ExistsRequest{Key: c.durableKey(id)}); err == nil && r.GetExists() {
				have[id] = true
			}
		}
	}
	ok := make([]bool, len(ids))
	sem := make(chan struct{}, c.cfg.MaxFanout)
	var wg sync.WaitGroup
	for i, id := range ids {
		if have[id] {
			ok[i] = true
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := c.createDurableInbox(ctx, ms, id)
			if err == nil {
				_, err = rs.kv.Set(rs.ctx, &keyvaluev1.SetRequest{Key: c.durableKey(id), Value: []byte{1}})
			}
			if err != nil {
				statuses[i] = &registryv1.TargetStatus{Identity: id, Status: registryv1.TargetStatus_STATUS_FAILED,
					Error: slotError("messaging", "create the durable inbox", err).Error()}
				return
			}
			ok[i] = true
		}()
	}
	wg.Wait()
	var send []int
	for i := range ids {
		if ok[i] {
			send = append(send, i)
		}
	}
	return send
}

// createDurableInbox subscribes the durable consumer of id's at-least-once
// topic (which creates it) and unsubscribes at once, waiting for the
// Unsubscribed event so that nothing published later is delivered to it.
func (c *Coordinator) createDurableInbox(ctx context.Context, ms psSlot, id string) error {
	sctx, cancel := context.WithCancel(ms.ctx)
	defer cancel()
	stream, err := subscribe(ctx, sctx, ms.ps, &pubsubv1.Subscription{Topic: c.inboxTopic(id, true, ms.maxTopic()), Durable: durableName,
		AckWait: durationpb.New(c.cfg.AckWait)})
	if err != nil {
		return err
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Unsubscribe{Unsubscribe: &pubsubv1.Unsubscribe{}}}); err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if ev.GetUnsubscribed() != nil {
			return nil
		}
	}
}

// deleteDurableInbox removes id's durable inbox, if it has one.
func (c *Coordinator) deleteDurableInbox(ctx context.Context, rs kvSlot, id string) {
	ms, err := c.messagingSlot(ctx)
	if err != nil || !ms.durable() {
		return
	}
	r, err := rs.kv.Exists(rs.ctx, &keyvaluev1.ExistsRequest{Key: c.durableKey(id)})
	if err != nil || !r.GetExists() {
		return
	}
	_, err = ms.ps.DeleteDurable(ms.ctx, &pubsubv1.DeleteDurableRequest{Topic: c.inboxTopic(id, true, ms.maxTopic()), Durable: durableName})
	if err != nil && status.Code(err) != codes.NotFound {
		c.log.Warn("delete durable inbox", "error", err.Error())
		return
	}
	_, _ = rs.kv.Delete(rs.ctx, &keyvaluev1.DeleteRequest{Key: c.durableKey(id)})
}

// ack records that identity id acknowledged its message of multicast mc,
// in the registry slot, until a minute after the multicast's deadline.
func (c *Coordinator) ack(ctx context.Context, id, mc string, deadline time.Time) error {
	s, err := c.registrySlot(ctx)
	if err != nil {
		return err
	}
	ttl := max(time.Until(deadline), 0) + time.Minute
	_, err = s.kv.Set(s.ctx, &keyvaluev1.SetRequest{Key: c.ackPrefix(mc) + escape(id), Value: []byte(c.owner), Ttl: durationpb.New(ttl)})
	if err != nil {
		return slotError("registry", "record acknowledgement", err)
	}
	c.mu.Lock()
	wake := c.waiters[mc]
	c.mu.Unlock()
	if wake != nil {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// subscribe opens a PubSub subscription on sctx (which lives as long as the
// subscription) and waits, bounded by ctx, for its Subscribed event.
func subscribe(ctx, sctx context.Context, ps pubsubv1.PubSubClient, sub *pubsubv1.Subscription) (pubsubv1.PubSub_SubscribeClient, error) {
	stream, err := ps.Subscribe(sctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{Subscription: sub}}); err != nil {
		_, err = stream.Recv()
		return nil, err
	}
	type result struct {
		ev  *pubsubv1.SubscribeEvent
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ev, err := stream.Recv()
		ch <- result{ev, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if r.ev.GetSubscribed() == nil {
			return nil, errors.New("the first event of the subscription is not Subscribed")
		}
		return stream, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}
