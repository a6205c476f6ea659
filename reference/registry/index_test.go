package registry_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/registry"
)

// enumerated returns every identity rc enumerates, with the value of field k.
func enumerated(t *testing.T, rc registryv1.RegistryClient) map[string]string {
	t.Helper()
	out := map[string]string{}
	cursor := ""
	for {
		resp, err := rc.Enumerate(context.Background(), &registryv1.EnumerateRequest{IncludeMetadata: true, PageSize: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range resp.GetIdentities() {
			out[id.GetIdentity()] = id.GetMetadata()["k"].GetStringValue()
		}
		if cursor = resp.GetNextCursor(); cursor == "" {
			return out
		}
	}
}

func wantEnumerated(t *testing.T, what string, rc registryv1.RegistryClient, want map[string]string) {
	t.Helper()
	got := enumerated(t, rc)
	if len(got) != len(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
	for id, k := range want {
		if v, ok := got[id]; !ok || v != k {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}
}

// TestIndexSeesEveryChangeOfAnotherCoordinator: two coordinators (two
// proxies) on one registry slot; each change through one is seen by the
// next read through the other, although the other's index was loaded
// before: a register, a heartbeat with new metadata, an unregister, in
// Enumerate, total_count and Multicast's targets.
func TestIndexSeesEveryChangeOfAnotherCoordinator(t *testing.T) {
	slot := startMemstore(t)
	a := serve(t, newCoordinator(t, registry.Config{}, slot, slot))
	b := serve(t, newCoordinator(t, registry.Config{}, slot, slot))
	ctx := context.Background()
	if _, err := register(t, a, "base", map[string]*registryv1.Value{"k": str("0")}, time.Minute, false); err != nil {
		t.Fatal(err)
	}
	wantEnumerated(t, "before", b, map[string]string{"base": "0"})

	if _, err := register(t, a, "dev", map[string]*registryv1.Value{"k": str("1")}, time.Minute, false); err != nil {
		t.Fatal(err)
	}
	wantEnumerated(t, "after a register through the other", b, map[string]string{"base": "0", "dev": "1"})
	resp, err := b.Enumerate(ctx, &registryv1.EnumerateRequest{PageSize: 1})
	if err != nil || resp.GetTotalCount() != 2 {
		t.Fatalf("total_count after a register through the other: %v, %v; want 2", resp.GetTotalCount(), err)
	}

	hb, err := register(t, a, "dev", map[string]*registryv1.Value{"k": str("2")}, time.Minute, true)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := b.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: cond("k", registryv1.Condition_OP_EQ, str("2"))})
	if err != nil || len(bare.GetIdentities()) != 1 {
		t.Fatalf("enumerate without metadata after a heartbeat through the other: %v, %v", bare, err)
	}
	if id := bare.GetIdentities()[0]; id.GetIdentity() != "dev" || id.GetMetadata() != nil ||
		!id.GetRegisteredAt().AsTime().Equal(hb.GetRegisteredAt().AsTime()) || !id.GetExpiresAt().AsTime().Equal(hb.GetExpiresAt().AsTime()) {
		t.Fatalf("enumerate without metadata: got %v, want dev with the heartbeat's timestamps %v and no metadata", id, hb)
	}
	wantEnumerated(t, "after a heartbeat with new metadata through the other", b, map[string]string{"base": "0", "dev": "2"})
	mc, err := b.Multicast(ctx, &registryv1.MulticastRequest{Filter: cond("k", registryv1.Condition_OP_EQ, str("2"))})
	if err != nil || mc.GetTargetCount() != 1 {
		t.Fatalf("multicast targets after a heartbeat through the other: %v, %v; want 1 (dev)", mc, err)
	}

	if _, err := a.Unregister(ctx, &registryv1.UnregisterRequest{Identity: "dev"}); err != nil {
		t.Fatal(err)
	}
	wantEnumerated(t, "after an unregister through the other", b, map[string]string{"base": "0"})
	mc, err = b.Multicast(ctx, &registryv1.MulticastRequest{Filter: cond("k", registryv1.Condition_OP_EQ, str("2"))})
	if err != nil || mc.GetTargetCount() != 0 {
		t.Fatalf("multicast targets after an unregister through the other: %v, %v; want none", mc, err)
	}
}

// TestIndexHonoursExpiry: an identity whose TTL passed leaves Enumerate,
// total_count and the targets although nothing changed in the slot (the
// index is not reloaded).
func TestIndexHonoursExpiry(t *testing.T) {
	slot := startMemstore(t)
	var clk clock
	rc := serve(t, newCoordinator(t, registry.Config{ExpiryGrace: time.Hour}, slot, slot, registry.WithClock(clk.now)))
	if _, err := register(t, rc, "short", map[string]*registryv1.Value{"k": str("s")}, time.Second, false); err != nil {
		t.Fatal(err)
	}
	if _, err := register(t, rc, "long", map[string]*registryv1.Value{"k": str("l")}, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	wantEnumerated(t, "before the TTL", rc, map[string]string{"short": "s", "long": "l"})
	clk.advance(2 * time.Second)
	wantEnumerated(t, "after the TTL", rc, map[string]string{"long": "l"})
	resp, err := rc.Enumerate(context.Background(), &registryv1.EnumerateRequest{PageSize: 1})
	if err != nil || resp.GetTotalCount() != 1 || resp.GetNextCursor() != "" {
		t.Fatalf("after the TTL: %v, %v; want total_count 1 and no next page", resp, err)
	}
	mc, err := rc.Multicast(context.Background(), &registryv1.MulticastRequest{})
	if err != nil || mc.GetTargetCount() != 1 {
		t.Fatalf("multicast after the TTL: %v, %v; want 1 target (long)", mc, err)
	}
}

// slotKV is a KeyValue client on a slot, for changing it behind the
// coordinators' backs.
func slotKV(t *testing.T, s registry.Slot) keyvaluev1.KeyValueClient {
	t.Helper()
	conn, _, err := s()
	if err != nil {
		t.Fatal(err)
	}
	return keyvaluev1.NewKeyValueClient(conn)
}

// TestIndexReloadsWhenTheSlotLostItsData: when the registry slot loses its
// keys (a restarted store), the version key goes with them and the next
// read loads again.
func TestIndexReloadsWhenTheSlotLostItsData(t *testing.T) {
	slot := startMemstore(t)
	rc := serve(t, newCoordinator(t, registry.Config{}, slot, slot))
	if _, err := register(t, rc, "dev", nil, time.Minute, false); err != nil {
		t.Fatal(err)
	}
	wantEnumerated(t, "before", rc, map[string]string{"dev": ""})
	kv, ctx := slotKV(t, slot), context.Background()
	resp, err := kv.Scan(ctx, &keyvaluev1.ScanRequest{Prefix: "prism-registry/test/", PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range resp.GetEntries() {
		if _, err := kv.Delete(ctx, &keyvaluev1.DeleteRequest{Key: e.GetKey()}); err != nil {
			t.Fatal(err)
		}
	}
	wantEnumerated(t, "after the slot lost every key", rc, map[string]string{})
}

// TestIndexRevalidatesAnOldCopy: a record written without a new version
// (a writer that failed between the two) is seen once the copy is older
// than its bound, even though the version never changes.
func TestIndexRevalidatesAnOldCopy(t *testing.T) {
	slot := startMemstore(t)
	var clk clock
	rc := serve(t, newCoordinator(t, registry.Config{}, slot, slot, registry.WithClock(clk.now)))
	if _, err := register(t, rc, "dev", nil, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	wantEnumerated(t, "before", rc, map[string]string{"dev": ""})
	rec, err := proto.Marshal(&registryv1.Identity{Identity: "sneaked", RegisteredAt: timestamppb.New(clk.now()),
		ExpiresAt: timestamppb.New(clk.now().Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slotKV(t, slot).Set(context.Background(), &keyvaluev1.SetRequest{Key: "prism-registry/test/i/sneaked", Value: rec}); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Minute)
	wantEnumerated(t, "a minute after a write that left the version alone", rc, map[string]string{"dev": "", "sneaked": ""})
}

// TestPresenceIndexSeesReceiversOfAnotherCoordinator: two coordinators on
// one registry slot and one bus; a receiver opened and closed through one
// is a receiver, and then none, for the other's next multicast, well
// within the presence index's bound (presence_ttl / 3 = 20 s here).
func TestPresenceIndexSeesReceiversOfAnotherCoordinator(t *testing.T) {
	slot := startMemstore(t)
	cfg := registry.Config{PresenceTTL: time.Minute}
	a := serve(t, newCoordinator(t, cfg, slot, slot))
	b := serve(t, newCoordinator(t, cfg, slot, slot))
	ctx := context.Background()
	if _, err := register(t, a, "dev", nil, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	multicast := func() registryv1.TargetStatus_Status {
		t.Helper()
		resp, err := b.Multicast(ctx, &registryv1.MulticastRequest{Payload: []byte("x")})
		if err != nil || len(resp.GetStatuses()) != 1 {
			t.Fatalf("multicast: %v, %v; want one target", resp, err)
		}
		return resp.GetStatuses()[0].GetStatus()
	}
	if got := multicast(); got != registryv1.TargetStatus_STATUS_FAILED {
		t.Fatalf("before any receiver: %v, want FAILED", got)
	}
	r := receive(t, a, "dev")
	if got := multicast(); got != registryv1.TargetStatus_STATUS_DELIVERED {
		t.Fatalf("with a receiver on the other coordinator: %v, want DELIVERED", got)
	}
	waitFor(t, "the message", func() bool { return r.count() == 1 })
	r.cancel()
	waitFor(t, "the closed receiver to stop counting for the other coordinator", func() bool {
		return multicast() == registryv1.TargetStatus_STATUS_FAILED
	})
}
