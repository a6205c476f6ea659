// Package registry holds the Ginkgo specs that certify the Multicast
// Registry capabilities of the reference proxy's registry pattern:
// registry.basic, registry.multicast and registry.at_least_once.
//
// [Register] only registers specs; it never calls RunSpecs. The fixture is
// read when each spec runs: its Target must be the main registry namespace
// on the proxy and its Registry field must describe the namespaces (the
// harness configures them with [NamespaceConfigs]); otherwise the specs are
// skipped with that reason. Every spec carries its capability as a Ginkgo
// label and a topic label (filter, expiry, replace, quota, schema, paging,
// isolation, restart, delivery, concurrency, deadline) so one topic can be
// run alone.
//
// Every spec registers identities under its own prefix
// ([fixture.Fixture.Prefix]) and tags them with a metadata field holding the
// prefix, which every filter it sends includes, so specs never see each
// other's identities; it unregisters what it registered and closes the
// inboxes it opened. Readiness is never waited for with a sleep: an inbox is
// live at its Subscribed event and deliveries are awaited with Eventually.
// The only timed waits are for a TTL to run out. Loops are bounded. A TTL
// that must outlast some calls is derived from the call latency measured in
// the same spec (liveWindow), and an observation that an identity is live
// which came back only after its TTL had ended is a harness error (the
// machine was too slow to judge), never the registry's failure.
package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// Labels of the registry capabilities and of the spec topics.
var (
	basic       = Label(string(capability.RegistryBasic))
	multicast   = Label(string(capability.RegistryMulticast))
	atLeastOnce = Label(string(capability.RegistryAtLeastOnce))
)

// TagField is the metadata field every identity a spec registers carries,
// holding the spec's prefix.
const TagField = "prism_spec"

// Quota is the quota of the quota namespace.
const Quota = 3

// ExpiryGrace is how long the registry slot keeps an expired record in the
// suite's namespaces: long enough that a coordinator which relied on the
// slot's TTL alone would be seen enumerating or counting expired identities.
const ExpiryGrace = 4 * time.Second

// AckWait is the at-least-once redelivery delay of the suite's namespaces.
const AckWait = 500 * time.Millisecond

// NamespaceConfigs returns the registry settings of the three namespaces
// the suite needs: main (no schema, no quota), schema (the suite's schema)
// and quota (Quota identities). keyPrefix makes their keys and topics unique
// to the run (e.g. "prism-test/<run id>/"). Each is the YAML of a namespace's
// `registry:` section in the reference proxy's config (documented on
// reference/registry.Config): the suite states them in the proxy's config
// format, not in its Go types, as it observes the proxy only through its
// interfaces.
func NamespaceConfigs(keyPrefix string) (main, schema, quota string) {
	base := func(name string) string {
		return fmt.Sprintf("key_prefix: %q\ntopic_prefix: %q\nexpiry_grace: %s\nack_wait: %s\npresence_ttl: 5s\n",
			keyPrefix+name+"/", keyPrefix+name+"/", ExpiryGrace, AckWait)
	}
	main = base("main")
	schema = base("schema") + fmt.Sprintf(`schema:
  closed: true
  fields:
    %q: {type: string}
    type: {type: string, required: true, enum: [sensor, actuator, gateway]}
    floor: {type: int}
    ratio: {type: number}
    name: {type: string, max_length: 16}
    tags: {type: list, max_length: 3}
    active: {type: bool}
`, TagField)
	quota = base("quota") + fmt.Sprintf("max_identities: %d\n", Quota)
	return main, schema, quota
}

// Register adds the registry specs to the Ginkgo tree under "Registry".
func Register(p fixture.Provider) bool {
	return Describe("Registry", func() {
		var s *session
		BeforeEach(func() {
			fx := p()
			if fx.Registry == nil {
				Skip("the fixture serves no registry pattern (certify it with prism-accept --pattern registry)")
			}
			if slices.Contains(CurrentSpecReport().Labels(), string(capability.RegistryAtLeastOnce)) &&
				!fx.Declared().Has(capability.RegistryAtLeastOnce) && !fx.ProbeUndeclared {
				Skip(fmt.Sprintf("the messaging slot (%s) does not declare %s, so %s is not offered",
					fx.Registry.MessagingSlot, capability.PubSubDurable, capability.RegistryAtLeastOnce))
			}
			fixture.Gate(fx)
			s = newSession(fx)
			DeferCleanup(s.cleanup)
		})
		sess := func() *session { return s }
		describeBasic(sess)
		describeFilters(sess)
		describeExpiry(sess)
		describeMulticast(sess)
		describeAtLeastOnce(sess)
	})
}

// session is one spec's view: the fixture, clients of the namespaces, the
// spec's prefix, and what it registered and opened.
type session struct {
	fx     *fixture.Fixture
	rc     registryv1.RegistryClient
	prefix string

	mu         sync.Mutex
	registered map[string]map[string]bool // namespace → identities
	inboxes    []*inbox
}

func newSession(fx *fixture.Fixture) *session {
	return &session{fx: fx, rc: fx.Target.Registry(), prefix: fx.Prefix(), registered: map[string]map[string]bool{}}
}

// client returns a registry client of namespace ns on the fixture's proxy.
func (s *session) client(ns string) registryv1.RegistryClient {
	t := s.fx.Target
	t.Namespace = ns
	return t.Registry()
}

func (s *session) ctx() context.Context { return s.fx.Ctx() }

// id returns the spec-unique identity for name.
func (s *session) id(name string) string { return s.prefix + name }

// name strips the spec's prefix from an identity.
func (s *session) name(id string) string { return strings.TrimPrefix(id, s.prefix) }

// S is a string value.
func S(v string) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_StringValue{StringValue: v}}
}

// I is an integer value.
func I(v int64) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_IntValue{IntValue: v}}
}

// F is a float value.
func F(v float64) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_FloatValue{FloatValue: v}}
}

// B is a bool value.
func B(v bool) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_BoolValue{BoolValue: v}}
}

// L is a list value.
func L(v ...string) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_ListValue{ListValue: &registryv1.StringList{Values: v}}}
}

// md is metadata: the spec's tag plus pairs.
type md map[string]*registryv1.Value

func (s *session) tagged(m md) map[string]*registryv1.Value {
	out := map[string]*registryv1.Value{TagField: S(s.prefix)}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *session) track(ns, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.registered[ns] == nil {
		s.registered[ns] = map[string]bool{}
	}
	s.registered[ns][id] = true
}

// register registers name in namespace ns (its metadata tagged) and
// returns the raw answer.
func (s *session) register(ns, name string, m md, ttl time.Duration, replace bool) (*registryv1.RegisterResponse, error) {
	s.track(ns, s.id(name))
	return s.client(ns).Register(s.ctx(), &registryv1.RegisterRequest{Identity: s.id(name), Metadata: s.tagged(m),
		Ttl: durationpb.New(ttl), Replace: replace})
}

// MustRegister registers name in the main namespace for a minute.
func (s *session) MustRegister(name string, m md) *registryv1.RegisterResponse {
	GinkgoHelper()
	resp, err := s.register(s.fx.Target.Namespace, name, m, time.Minute, false)
	Expect(err).NotTo(HaveOccurred(), "Register %q", name)
	return resp
}

// MustRegisterMany registers names concurrently (32 at a time).
func (s *session) MustRegisterMany(names []string, m func(i int) md) {
	GinkgoHelper()
	errs := make(chan error, len(names))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, n := range names {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := s.register(s.fx.Target.Namespace, n, m(i), time.Minute, false); err != nil {
				errs <- fmt.Errorf("register %q: %w", n, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		Expect(err).NotTo(HaveOccurred())
	}
}

// MustUnregister unregisters name from the main namespace.
func (s *session) MustUnregister(name string) bool {
	GinkgoHelper()
	resp, err := s.rc.Unregister(s.ctx(), &registryv1.UnregisterRequest{Identity: s.id(name)})
	Expect(err).NotTo(HaveOccurred(), "Unregister %q", name)
	return resp.GetExisted()
}

// cleanup closes the inboxes and unregisters every identity, newest last.
func (s *session) cleanup() {
	s.mu.Lock()
	inboxes, registered := s.inboxes, s.registered
	s.inboxes, s.registered = nil, map[string]map[string]bool{}
	s.mu.Unlock()
	for i := len(inboxes) - 1; i >= 0; i-- {
		inboxes[i].cancel()
	}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for ns, ids := range registered {
		c := s.client(ns)
		for id := range ids {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Call)
				defer cancel()
				_, _ = c.Unregister(ctx, &registryv1.UnregisterRequest{Identity: id})
			}()
		}
	}
	wg.Wait()
}

// Filter helpers.
func cond(field string, op registryv1.Condition_Op, v *registryv1.Value) *registryv1.Filter {
	return &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{Field: field, Op: op, Value: v}}}
}

func eq(field string, v *registryv1.Value) *registryv1.Filter {
	return cond(field, registryv1.Condition_OP_EQ, v)
}

func and(fs ...*registryv1.Filter) *registryv1.Filter {
	return &registryv1.Filter{Node: &registryv1.Filter_And{And: &registryv1.FilterList{Filters: fs}}}
}

func or(fs ...*registryv1.Filter) *registryv1.Filter {
	return &registryv1.Filter{Node: &registryv1.Filter_Or{Or: &registryv1.FilterList{Filters: fs}}}
}

func not(f *registryv1.Filter) *registryv1.Filter {
	return &registryv1.Filter{Node: &registryv1.Filter_Not{Not: f}}
}

// scoped restricts f (nil: everything) to the spec's identities.
func (s *session) scoped(f *registryv1.Filter) *registryv1.Filter {
	tag := eq(TagField, S(s.prefix))
	if f == nil {
		return tag
	}
	return and(tag, f)
}

// enumerate walks every page of the spec's identities that f selects, in
// the main namespace, and returns them with the first page's total_count.
func (s *session) enumerate(c registryv1.RegistryClient, f *registryv1.Filter, pageSize int) ([]*registryv1.Identity, int64) {
	GinkgoHelper()
	var out []*registryv1.Identity
	cursor, total := "", int64(-1)
	for pages := 0; ; pages++ {
		Expect(pages).To(BeNumerically("<", 10_000), "the walk does not end")
		resp, err := c.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: f, PageSize: int32(pageSize), Cursor: cursor, IncludeMetadata: true})
		Expect(err).NotTo(HaveOccurred(), "Enumerate page %d", pages)
		if pageSize > 0 {
			Expect(len(resp.GetIdentities())).To(BeNumerically("<=", pageSize), "a page holds at most page_size identities")
		}
		if total < 0 {
			total = resp.GetTotalCount()
		}
		out = append(out, resp.GetIdentities()...)
		if cursor = resp.GetNextCursor(); cursor == "" {
			return out, total
		}
	}
}

// names returns the spec-relative names of the identities, in order.
func (s *session) names(ids []*registryv1.Identity) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = s.name(id.GetIdentity())
	}
	return out
}

// MustEnumerateNames returns the names of the spec's identities f selects.
func (s *session) MustEnumerateNames(f *registryv1.Filter) []string {
	GinkgoHelper()
	ids, _ := s.enumerate(s.rc, s.scoped(f), 0)
	return s.names(ids)
}

// inbox is an open Receive stream that collects its messages.
type inbox struct {
	name   string
	stream registryv1.Registry_ReceiveClient
	cancel context.CancelFunc

	mu   sync.Mutex
	msgs []*registryv1.InboxMessage
	end  error
}

// openInbox opens Receive for name on client c and waits for Subscribed.
func (s *session) openInbox(c registryv1.RegistryClient, name string) (*inbox, error) {
	ctx, cancel := context.WithCancel(context.Background())
	// Opening the stream may wait for a free HTTP/2 stream on the
	// connection: until Subscribed arrives, the call timeout bounds it.
	opening := time.AfterFunc(s.fx.Timeouts.Call, cancel)
	defer opening.Stop()
	stream, err := c.Receive(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	in := &inbox{name: name, stream: stream, cancel: cancel}
	s.mu.Lock()
	s.inboxes = append(s.inboxes, in)
	s.mu.Unlock()
	open := &registryv1.ReceiveRequest{Request: &registryv1.ReceiveRequest_Open_{Open: &registryv1.ReceiveRequest_Open{Identity: s.id(name)}}}
	if err := stream.Send(open); err != nil {
		_, err = stream.Recv()
		cancel()
		return nil, err
	}
	first := make(chan error, 1)
	go func() {
		ev, err := stream.Recv()
		if err == nil && ev.GetSubscribed().GetIdentity() != s.id(name) {
			err = fmt.Errorf("the first event must be Subscribed for %q, got %v", s.id(name), ev)
		}
		first <- err
	}()
	select {
	case err := <-first:
		if err != nil {
			cancel()
			return nil, err
		}
	case <-time.After(s.fx.Timeouts.Call):
		cancel()
		return nil, fmt.Errorf("no Subscribed event within %v", s.fx.Timeouts.Call)
	}
	go func() {
		for {
			ev, err := stream.Recv()
			in.mu.Lock()
			if err != nil {
				in.end = err
				in.mu.Unlock()
				return
			}
			if m := ev.GetMessage(); m != nil {
				in.msgs = append(in.msgs, m)
			}
			in.mu.Unlock()
		}
	}()
	return in, nil
}

// MustReceive opens the inbox of name in the main namespace.
func (s *session) MustReceive(name string) *inbox {
	GinkgoHelper()
	in, err := s.openInbox(s.rc, name)
	Expect(err).NotTo(HaveOccurred(), "Receive %q", name)
	return in
}

// inboxesPerConn is how many inboxes MustReceiveMany opens on one client
// connection, as many receivers on one client would: a proxy bounds the
// streams of one connection (prism-proxy's limits.max_concurrent_streams,
// 128 by default), and a thousand receivers are a thousand clients.
const inboxesPerConn = 100

// MustReceiveMany opens the inboxes of names concurrently, at most
// inboxesPerConn on each connection to the proxy.
func (s *session) MustReceiveMany(names []string) map[string]*inbox {
	GinkgoHelper()
	clients := []registryv1.RegistryClient{s.rc}
	for len(clients)*inboxesPerConn < len(names) {
		conn, err := target.Dial(s.fx.Proxy.Addr)
		if err != nil {
			fixture.HarnessFail(fmt.Errorf("dial another connection to the proxy: %w", err))
		}
		DeferCleanup(conn.Close)
		t := s.fx.Target
		t.Conn = conn
		clients = append(clients, t.Registry())
	}
	out := make(map[string]*inbox, len(names))
	var mu sync.Mutex
	errs := make(chan error, len(names))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, n := range names {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			in, err := s.openInbox(clients[i/inboxesPerConn], n)
			if err != nil {
				errs <- fmt.Errorf("receive %q: %w", n, err)
				return
			}
			mu.Lock()
			out[n] = in
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		Expect(err).NotTo(HaveOccurred())
	}
	return out
}

// Messages returns a copy of what arrived.
func (in *inbox) Messages() []*registryv1.InboxMessage {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]*registryv1.InboxMessage(nil), in.msgs...)
}

// Payloads returns the payloads that arrived, in order.
func (in *inbox) Payloads() []string {
	var out []string
	for _, m := range in.Messages() {
		out = append(out, string(m.GetPayload()))
	}
	return out
}

// WaitCount waits until at least n messages arrived, failing early if the
// stream ends.
func (in *inbox) WaitCount(n int, timeout time.Duration) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		in.mu.Lock()
		got, end := len(in.msgs), in.end
		in.mu.Unlock()
		g.Expect(end).To(BeNil(), "the inbox of %q ended after %d messages", in.name, got)
		g.Expect(got).To(BeNumerically(">=", n), "messages in the inbox of %q", in.name)
	}).WithTimeout(timeout).WithPolling(5 * time.Millisecond).Should(Succeed())
}

// ack acknowledges a message on the inbox's stream.
func (in *inbox) ack(messageID string) error {
	return in.stream.Send(&registryv1.ReceiveRequest{Request: &registryv1.ReceiveRequest_Ack_{Ack: &registryv1.ReceiveRequest_Ack{MessageId: messageID}}})
}

// MustMulticast multicasts payload at-most-once to the spec's identities f
// selects.
func (s *session) MustMulticast(f *registryv1.Filter, payload string) *registryv1.MulticastResponse {
	GinkgoHelper()
	resp, err := s.rc.Multicast(s.ctx(), &registryv1.MulticastRequest{Filter: s.scoped(f), Payload: []byte(payload),
		Delivery: registryv1.Delivery_DELIVERY_AT_MOST_ONCE})
	Expect(err).NotTo(HaveOccurred(), "Multicast %q", payload)
	Expect(resp.GetStatuses()).To(HaveLen(int(resp.GetTargetCount())), "one status per target")
	Expect(resp.GetDeliveredCount()+resp.GetFailedCount()).To(Equal(resp.GetTargetCount()), "delivered + failed = targets")
	return resp
}

// byName maps a multicast's statuses by spec-relative name.
func (s *session) byName(resp *registryv1.MulticastResponse) map[string]registryv1.TargetStatus_Status {
	out := map[string]registryv1.TargetStatus_Status{}
	for _, st := range resp.GetStatuses() {
		out[s.name(st.GetIdentity())] = st.GetStatus()
	}
	return out
}
