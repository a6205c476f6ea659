package registry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/registry"
	"github.com/prism-suite/prism/reference/registry/filter"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startMemstore serves an in-process memstore plugin on 127.0.0.1 and
// returns it as a slot.
func startMemstore(t testing.TB) registry.Slot {
	t.Helper()
	srv := sdk.NewServer(memstore.New(), sdk.WithLogger(quiet))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.GRPC().Serve(lis) }()
	t.Cleanup(srv.GRPC().Stop)
	conn := dial(t, lis.Addr().String())
	lc := lifecyclev1.NewLifecycleClient(conn)
	ctx := context.Background()
	desc, err := lc.Describe(ctx, &lifecyclev1.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Initialize(ctx, &lifecyclev1.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Start(ctx, &lifecyclev1.StartRequest{}); err != nil {
		t.Fatal(err)
	}
	return func() (grpc.ClientConnInterface, *lifecyclev1.DescribeResponse, error) { return conn, desc, nil }
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// serve serves a coordinator's Registry on 127.0.0.1 and returns a client.
func serve(t testing.TB, c *registry.Coordinator) registryv1.RegistryClient {
	t.Helper()
	srv := grpc.NewServer()
	registryv1.RegisterRegistryServer(srv, registry.NewServer(func(context.Context, string) (*registry.Coordinator, func(error), error) {
		return c, func(error) {}, nil
	}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return registryv1.NewRegistryClient(dial(t, lis.Addr().String()))
}

func newCoordinator(t *testing.T, cfg registry.Config, reg, msg registry.Slot, opts ...registry.Option) *registry.Coordinator {
	t.Helper()
	c, err := registry.New("test", cfg, reg, msg, append([]registry.Option{registry.WithLogger(quiet), registry.WithMutant("")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func str(s string) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_StringValue{StringValue: s}}
}
func num(i int64) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_IntValue{IntValue: i}}
}

func cond(field string, op registryv1.Condition_Op, v *registryv1.Value) *registryv1.Filter {
	return &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{Field: field, Op: op, Value: v}}}
}

func and(fs ...*registryv1.Filter) *registryv1.Filter {
	return &registryv1.Filter{Node: &registryv1.Filter_And{And: &registryv1.FilterList{Filters: fs}}}
}

func register(t *testing.T, rc registryv1.RegistryClient, id string, md map[string]*registryv1.Value, ttl time.Duration, replace bool) (*registryv1.RegisterResponse, error) {
	t.Helper()
	return rc.Register(context.Background(), &registryv1.RegisterRequest{Identity: id, Metadata: md, Ttl: durationpb.New(ttl), Replace: replace})
}

// clock is a settable clock for the coordinator.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }
func code(err error) codes.Code          { return status.Code(err) }
func wantCode(t *testing.T, err error, want codes.Code, what string) {
	t.Helper()
	if code(err) != want {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

func TestRegisterReplaceExpiryAndQuota(t *testing.T) {
	slot := startMemstore(t)
	var clk clock
	c := newCoordinator(t, registry.Config{MaxIdentities: 2, ExpiryGrace: time.Minute}, slot, slot, registry.WithClock(clk.now))
	rc := serve(t, c)
	md := map[string]*registryv1.Value{"type": str("sensor")}
	first, err := register(t, rc, "a/b c.*>", md, time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = register(t, rc, "a/b c.*>", md, time.Second, false)
	wantCode(t, err, codes.AlreadyExists, "second register without replace")
	again, err := register(t, rc, "a/b c.*>", md, time.Minute, true)
	if err != nil {
		t.Fatal(err)
	}
	if !again.GetRegisteredAt().AsTime().Equal(first.GetRegisteredAt().AsTime()) || !again.GetExpiresAt().AsTime().After(first.GetExpiresAt().AsTime()) {
		t.Fatalf("replace must keep registered_at and extend expires_at: first %v, again %v", first, again)
	}
	if _, err := register(t, rc, "b", md, time.Second, false); err != nil {
		t.Fatal(err)
	}
	_, err = register(t, rc, "c", md, time.Second, false)
	wantCode(t, err, codes.ResourceExhausted, "third identity over a quota of 2")

	clk.advance(2 * time.Second) // "b" expired (still in the slot for the grace)
	if _, err := register(t, rc, "c", md, time.Second, false); err != nil {
		t.Fatalf("an expired identity must not count against the quota: %v", err)
	}
	if _, err := register(t, rc, "b", md, time.Second, false); code(err) != codes.ResourceExhausted {
		t.Fatalf("re-registering expired b with a full quota: got %v, want ResourceExhausted", err)
	}
	resp, err := rc.Enumerate(context.Background(), &registryv1.EnumerateRequest{IncludeMetadata: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range resp.GetIdentities() {
		got = append(got, id.GetIdentity())
	}
	if strings.Join(got, ",") != "a/b c.*>,c" || resp.GetTotalCount() != 2 {
		t.Fatalf("enumerate: got %q (total %d), want a/b c.*>,c (2)", got, resp.GetTotalCount())
	}
	u, err := rc.Unregister(context.Background(), &registryv1.UnregisterRequest{Identity: "b"})
	if err != nil || u.GetExisted() {
		t.Fatalf("unregister of an expired identity: %v, existed %v", err, u.GetExisted())
	}
}

func TestSchemaNamesTheField(t *testing.T) {
	slot := startMemstore(t)
	cfg := registry.Config{Schema: &registry.Schema{Closed: true, Fields: map[string]registry.Field{
		"type":  {Type: registry.TypeString, Required: true, Enum: []string{"sensor", "actuator"}},
		"floor": {Type: registry.TypeInt},
		"name":  {Type: registry.TypeString, MaxLength: 4},
	}}}
	rc := serve(t, newCoordinator(t, cfg, slot, slot))
	for _, tc := range []struct {
		md    map[string]*registryv1.Value
		field string
	}{
		{map[string]*registryv1.Value{}, "metadata.type"},
		{map[string]*registryv1.Value{"type": str("door")}, "metadata.type"},
		{map[string]*registryv1.Value{"type": str("sensor"), "floor": str("1")}, "metadata.floor"},
		{map[string]*registryv1.Value{"type": str("sensor"), "name": str("toolong")}, "metadata.name"},
		{map[string]*registryv1.Value{"type": str("sensor"), "zone": str("a")}, "metadata.zone"},
	} {
		_, err := register(t, rc, "x", tc.md, time.Minute, false)
		if code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
			t.Errorf("metadata %v: got %v, want InvalidArgument naming %s", tc.md, err, tc.field)
		}
	}
	if _, err := register(t, rc, "x", map[string]*registryv1.Value{"type": str("sensor"), "floor": num(2)}, time.Minute, false); err != nil {
		t.Fatal(err)
	}
}

func TestEnumeratePagesExactlyOnce(t *testing.T) {
	slot := startMemstore(t)
	rc := serve(t, newCoordinator(t, registry.Config{}, slot, slot))
	const n = 500
	ctx := context.Background()
	for i := range n {
		md := map[string]*registryv1.Value{"n": num(int64(i)), "kind": str([]string{"a", "b", "c"}[i%3])}
		if _, err := register(t, rc, fmt.Sprintf("id-%05d", i), md, time.Minute, false); err != nil {
			t.Fatal(err)
		}
	}
	// Churn during the walk: identities that come and go must not disturb
	// the ones present throughout.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("churn-%03d", i%50)
			_, _ = register(t, rc, id, map[string]*registryv1.Value{"kind": str("a")}, time.Minute, true)
			_, _ = rc.Unregister(ctx, &registryv1.UnregisterRequest{Identity: fmt.Sprintf("churn-%03d", (i+25)%50)})
		}
	}()
	f := cond("kind", registryv1.Condition_OP_NE, str("c"))
	seen := map[string]int{}
	cursor, pages := "", 0
	for {
		resp, err := rc.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: f, PageSize: 37, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.GetIdentities()) > 37 {
			t.Fatalf("page of %d > page_size 37", len(resp.GetIdentities()))
		}
		for _, id := range resp.GetIdentities() {
			seen[id.GetIdentity()]++
		}
		if cursor = resp.GetNextCursor(); cursor == "" {
			break
		}
		if pages > 1000 {
			t.Fatal("the walk does not end")
		}
	}
	close(stop)
	wg.Wait()
	for i := range n {
		id := fmt.Sprintf("id-%05d", i)
		want := 1
		if i%3 == 2 {
			want = 0
		}
		if seen[id] != want {
			t.Errorf("%s seen %d times, want %d", id, seen[id], want)
		}
	}
	for id, k := range seen {
		if k > 1 {
			t.Errorf("%s seen %d times", id, k)
		}
	}
	_, err := rc.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: and(cond("kind", registryv1.Condition_OP_REGEX, str("(")))})
	if code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "and[0]") {
		t.Fatalf("invalid regex: got %v, want InvalidArgument naming and[0]", err)
	}
}

// receiver opens Receive for id and collects its messages.
type receiver struct {
	stream registryv1.Registry_ReceiveClient
	mu     sync.Mutex
	msgs   []*registryv1.InboxMessage
	cancel context.CancelFunc
}

func receive(t *testing.T, rc registryv1.RegistryClient, id string) *receiver {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := rc.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&registryv1.ReceiveRequest{Request: &registryv1.ReceiveRequest_Open_{Open: &registryv1.ReceiveRequest_Open{Identity: id}}}); err != nil {
		t.Fatal(err)
	}
	ev, err := s.Recv()
	if err != nil || ev.GetSubscribed().GetIdentity() != id {
		t.Fatalf("receive %q: first event %v, %v; want Subscribed", id, ev, err)
	}
	r := &receiver{stream: s, cancel: cancel}
	go func() {
		for {
			ev, err := s.Recv()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, ev.GetMessage())
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *receiver) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.msgs) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestMulticastAtMostOnce(t *testing.T) {
	slot := startMemstore(t)
	rc := serve(t, newCoordinator(t, registry.Config{}, slot, slot))
	ctx := context.Background()
	for _, id := range []string{"sensor-1", "sensor-2", "actuator-1", "sensor 3/*"} {
		if _, err := register(t, rc, id, map[string]*registryv1.Value{"type": str(strings.Split(id, "-")[0])}, time.Minute, false); err != nil {
			t.Fatal(err)
		}
	}
	r1, r3, ra := receive(t, rc, "sensor-1"), receive(t, rc, "sensor 3/*"), receive(t, rc, "actuator-1")
	_, err := rc.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Multicast(ctx, &registryv1.MulticastRequest{Filter: cond("type", registryv1.Condition_OP_STARTSWITH, str("sensor")),
		Payload: []byte("hi"), Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTargetCount() != 3 || resp.GetDeliveredCount() != 2 || resp.GetFailedCount() != 1 {
		t.Fatalf("multicast: %v; want 3 targets, 2 delivered, 1 failed (sensor-2 has no receiver)", resp)
	}
	for _, st := range resp.GetStatuses() {
		if st.GetIdentity() == "sensor-2" && st.GetStatus() != registryv1.TargetStatus_STATUS_FAILED {
			t.Errorf("sensor-2: %v, want FAILED", st)
		}
	}
	waitFor(t, "both receivers", func() bool { return r1.count() == 1 && r3.count() == 1 })
	m := r1.msgs[0]
	if string(m.GetPayload()) != "hi" || m.GetMetadata()["k"] != "v" || len(m.GetMetadata()) != 1 || m.GetMulticastId() != resp.GetMulticastId() {
		t.Fatalf("message: %v", m)
	}
	if ra.count() != 0 {
		t.Fatalf("actuator-1 got %d messages meant for sensors", ra.count())
	}
	_, err = rc.Multicast(ctx, &registryv1.MulticastRequest{Delivery: registryv1.Delivery_DELIVERY_AT_LEAST_ONCE})
	wantCode(t, err, codes.FailedPrecondition, "at-least-once on memstore")
	_, err = rc.Multicast(ctx, &registryv1.MulticastRequest{Metadata: map[string]string{"prism-registry.to": "x"}})
	wantCode(t, err, codes.InvalidArgument, "reserved metadata")
}

// TestReceiversBehindAnotherBus: two coordinators share the registry slot;
// with separate messaging slots a receiver on one is no receiver for the
// other, with a shared one it is.
func TestReceiversBehindAnotherBus(t *testing.T) {
	reg, busA, busB := startMemstore(t), startMemstore(t), startMemstore(t)
	a := serve(t, newCoordinator(t, registry.Config{}, reg, busA))
	b := serve(t, newCoordinator(t, registry.Config{}, reg, busB))
	shared := serve(t, newCoordinator(t, registry.Config{}, reg, busA))
	if _, err := register(t, a, "dev", nil, time.Minute, false); err != nil {
		t.Fatal(err)
	}
	r := receive(t, a, "dev")
	resp, err := b.Multicast(context.Background(), &registryv1.MulticastRequest{Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeliveredCount() != 0 || resp.GetFailedCount() != 1 {
		t.Fatalf("via a proxy on another bus: %v; want FAILED", resp)
	}
	resp, err = shared.Multicast(context.Background(), &registryv1.MulticastRequest{Payload: []byte("y")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeliveredCount() != 1 {
		t.Fatalf("via a proxy on the same bus: %v; want DELIVERED", resp)
	}
	waitFor(t, "the message", func() bool { return r.count() == 1 })
	if got := string(r.msgs[0].GetPayload()); got != "y" {
		t.Fatalf("got %q, want y", got)
	}
}

// TestFilterSizeIsTheNamespaces: a namespace's filter_max_nodes and
// filter_max_bytes bound Enumerate's filter (InvalidArgument naming the
// limit, before the filter is walked); a config above the package maxima
// is refused naming the field.
func TestFilterSizeIsTheNamespaces(t *testing.T) {
	slot := startMemstore(t)
	rc := serve(t, newCoordinator(t, registry.Config{FilterMaxNodes: 3, FilterMaxBytes: 200}, slot, slot))
	ctx := context.Background()
	c := cond("kind", registryv1.Condition_OP_EQ, str("a"))
	if _, err := rc.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: and(c, c)}); err != nil {
		t.Fatalf("a filter of 3 nodes with filter_max_nodes 3: %v", err)
	}
	_, err := rc.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: and(c, c, c)})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "more than 3 nodes") {
		t.Errorf("a filter of 4 nodes with filter_max_nodes 3: got %v, want InvalidArgument naming 3 nodes", err)
	}
	long := cond("kind", registryv1.Condition_OP_EQ, str(strings.Repeat("x", 300)))
	_, err = rc.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: long})
	if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "over the limit of 200") {
		t.Errorf("a filter of 300+ bytes with filter_max_bytes 200: got %v, want InvalidArgument naming 200", err)
	}
	for field, cfg := range map[string]registry.Config{
		"filter_max_nodes": {FilterMaxNodes: filter.MaxNodes + 1},
		"filter_max_bytes": {FilterMaxBytes: -1},
	} {
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("config %+v: got %v, want an error naming %s", cfg, err, field)
		}
	}
}
