// Package capability is the one list of Prism capabilities: their names, what
// each promises, the interface version, and the suite whose specs certify it.
//
// A plugin declares capabilities in Describe; the Go plugin SDK derives them
// from the Go interfaces a driver satisfies, so a declaration cannot drift from
// the code. Specs carry the capability name as a Ginkgo label, so
// `--label-filter=keyvalue.ttl` selects the specs that certify keyvalue.ttl.
package capability

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// Name is a dotted capability name such as "keyvalue.ttl".
type Name string

// The capabilities of the KeyValue interface family.
const (
	KeyValueBasic Name = "keyvalue.basic"
	KeyValueTTL   Name = "keyvalue.ttl"
	KeyValueScan  Name = "keyvalue.scan"
	KeyValueBatch Name = "keyvalue.batch"
	// KeyValueLinearizable is judged by a robustness run (prism-accept
	// --robustness), not by specs: a normal run reports it "not tested".
	KeyValueLinearizable Name = "keyvalue.linearizable"
)

// The capabilities of the PubSub interface family.
const (
	PubSubBasic   Name = "pubsub.basic"
	PubSubOrdered Name = "pubsub.ordered"
	PubSubQueue   Name = "pubsub.queue"
	PubSubDurable Name = "pubsub.durable"
)

// The capabilities of the Multicast Registry. No plugin declares them: the
// reference proxy offers them for a namespace with pattern registry,
// according to what the plugins in its registry and messaging slots declare.
const (
	RegistryBasic       Name = "registry.basic"
	RegistryMulticast   Name = "registry.multicast"
	RegistryAtLeastOnce Name = "registry.at_least_once"
)

// The capabilities of auth. auth.jwt and auth.namespace are properties of
// the reference proxy, not of a plugin: no plugin declares them; a run that
// certifies the proxy's auth (prism-accept --auth) declares them for the
// proxy it starts. auth.backend-credentials and auth.rotation are declared by
// plugins (the Go SDK derives them from sdk.BackendCredentials and
// sdk.CredentialRotator).
const (
	AuthJWT                Name = "auth.jwt"
	AuthNamespace          Name = "auth.namespace"
	AuthBackendCredentials Name = "auth.backend-credentials"
	AuthRotation           Name = "auth.rotation"
)

// The capability of the reference proxy's admin API. No plugin declares it:
// a run that certifies the admin API (prism-accept --admin) declares it for
// the proxies it starts.
const AdminNamespaces Name = "admin.namespaces"

// ProxyCapabilities are the capabilities of the reference proxy rather than
// of a plugin: a run declares auth.jwt and auth.namespace for the proxy when
// it certifies its auth (--auth), and admin.namespaces when it certifies its
// admin API (--admin).
var ProxyCapabilities = []Name{AuthJWT, AuthNamespace, AdminNamespaces}

// ProxyAuthCapabilities are the proxy's auth capabilities, which a run with
// --auth declares.
var ProxyAuthCapabilities = []Name{AuthJWT, AuthNamespace}

// Lifecycle is not declared by plugins: every plugin must pass its specs
// (handshake, health, Initialize validation, Stop, exit on stdin close).
const Lifecycle Name = "lifecycle"

// Info describes one capability.
type Info struct {
	Name Name
	// InterfaceVersion is the version of the proto interface the capability is part of.
	InterfaceVersion string
	// Suite is the suite whose specs certify the capability (its folder under suites/).
	Suite string
	// Promise is what a plugin declaring the capability guarantees.
	Promise string
	// Required means every plugin is held to it, declared or not.
	Required bool
}

var all = []Info{
	{Lifecycle, "v1", "lifecycle", "Prints one handshake line, serves gRPC health, answers Describe, rejects bad config in " +
		"Initialize with InvalidArgument naming the field, stops within its deadline and exits when stdin closes.", true},
	{KeyValueBasic, "v1", "keyvalue", "Set, Get, Delete and Exists on binary-safe values and literal keys; Get of a missing key " +
		"is NotFound; Delete reports whether the key existed; invalid keys and oversized values are InvalidArgument; " +
		"safe under concurrent clients: no lost write or lost new key, a read returns a whole value some writer wrote to " +
		"that key and never one a write answered before the read was sent had replaced, a Set after racing Deletes wins.", false},
	{KeyValueTTL, "v1", "keyvalue", "Set with a TTL, Expire, GetTTL and Persist; a key whose TTL has ended is gone for " +
		"every operation at once (Get, Exists, Delete, GetTTL, Expire, Persist, Scan, Count, BatchGet, BatchDelete), " +
		"reclaimed or not, and never gone early; GetTTL tells 'no expiry' from 'no such key'; an overwrite without TTL " +
		"(Set or BatchSet) clears the TTL; a huge TTL (300 years, or beyond the largest Go duration) is kept or refused " +
		"with InvalidArgument naming the field.", false},
	{KeyValueScan, "v1", "keyvalue", "Scan by literal prefix in pages with an opaque cursor, returning every key present " +
		"for the whole scan exactly once and nothing outside the prefix; Count by prefix.", false},
	{KeyValueBatch, "v1", "keyvalue", "BatchSet, BatchGet and BatchDelete of up to the declared batch size, with per-key " +
		"results in request order.", false},
	{KeyValueLinearizable, "v1", "robustness", // report.RobustnessSuite
		"Under faults (prism-accept --robustness: backend nodes killed, paused " +
			"or partitioned while concurrent clients Set, Get and Delete a small key set), the history of every key is " +
			"linearizable as a register: no acknowledged write is lost, no read returns a value a write acknowledged before " +
			"the read began had replaced; a call whose answer was lost (timeout, Unavailable) may or may not have happened.", false},
	{PubSubBasic, "v1", "pubsub", "Publish, PublishBatch and Subscribe on literal topics with binary-safe payloads and " +
		"metadata; a subscription is live at its first (subscribed) event and then receives every message published to " +
		"its topic exactly once, and nothing of other topics, nor any message whose Publish returned before the " +
		"subscription was asked for; unsubscribe stops delivery; invalid topics and oversized " +
		"payloads are InvalidArgument; a subscriber that stops reading is handled by the declared slow-consumer policy " +
		"without stalling others and with bounded memory.", false},
	{PubSubOrdered, "v1", "pubsub", "Messages from one publisher on one topic arrive at every subscriber in publish " +
		"order, also with many concurrent publishers.", false},
	{PubSubQueue, "v1", "pubsub", "Subscribers in one queue group share the topic's messages: each message goes to " +
		"exactly one member live when it was published, and to the remaining members after one leaves; a member that " +
		"joins later gets a share of what is published once it is live and nothing published before; a member that left " +
		"gets nothing after its Unsubscribed; every other group and every plain subscriber of the topic still gets " +
		"every message.", false},
	{PubSubDurable, "v1", "pubsub", "Durable consumers: at-least-once delivery with explicit Ack, redelivery of " +
		"unacknowledged messages after the ack deadline, never redelivery of acknowledged ones, resumption where the " +
		"consumer left off after reconnecting, and messages kept across a backend restart; a new consumer (a name not " +
		"in use on the topic, also one deleted) starts with the messages published after its first subscription is " +
		"live and never gets one published before, whatever other consumers of the topic hold.", false},
	{RegistryBasic, "v1", "registry", "Through the proxy's registry pattern: Register with typed metadata and a TTL, " +
		"AlreadyExists without replace, replace as the heartbeat, schema violations InvalidArgument naming the field, a quota " +
		"(ResourceExhausted) that expired identities never count; Unregister idempotent; an expired identity is never " +
		"enumerated and can register again at once; Enumerate evaluates every filter operator as SEMANTICS.md defines it, " +
		"invalid filters are InvalidArgument naming the clause, and paging returns every identity present for the whole walk " +
		"exactly once; identities with any characters stay apart; concurrent use leaves a consistent state; the state lives " +
		"in the registry slot and survives a proxy restart.", false},
	{RegistryMulticast, "v1", "registry", "At-most-once Multicast: targets resolved when it runs, each live receiver " +
		"(an open Receive) gets the message exactly once and nothing meant for another identity, a target without a live " +
		"receiver is FAILED and never counted delivered, unregistered and expired identities get nothing, fan-out to 1 000 " +
		"targets within the deadline; at-least-once is FailedPrecondition when the messaging slot is not durable.", false},
	{RegistryAtLeastOnce, "v1", "registry", "At-least-once Multicast on a durable messaging slot: DELIVERED only when the " +
		"receiver acknowledged within the timeout, TIMEOUT otherwise, and redelivery to a receiver that did not acknowledge.", false},
	{AuthJWT, "v1", "auth", "(The proxy's.) Every data call needs one 'authorization: Bearer <JWT>' issued by the " +
		"configured OIDC issuer for the configured audience, signed with an allow-listed algorithm by a key of the " +
		"issuer's JWKS and not expired; any other token (alg none, algorithm confusion, forged, tampered, expired, " +
		"future, wrong issuer or audience, unknown kid, key-bearing headers, crit, oversized, missing or doubled) is " +
		"Unauthenticated with one generic message; keys rotated by the issuer are picked up, and a burst of unknown " +
		"kids causes a bounded number of JWKS fetches.", false},
	{AuthNamespace, "v1", "auth", "(The proxy's.) A valid token reads and writes only the namespaces its grants " +
		"name, read and write apart; anything else is PermissionDenied; the token is stripped before the call is " +
		"forwarded, so plugins never see it.", false},
	{AdminNamespaces, "v1", "admin", "(The proxy's.) The admin API (prism.admin.v1) refuses a call without a valid " +
		"token (Unauthenticated) or without the admin role (PermissionDenied); a created namespace serves at once, " +
		"and through a second proxy sharing the admin store; an update sends new calls to the new config while a call " +
		"in flight finishes on the old one; a deleted namespace answers NotFound; an invalid namespace is InvalidArgument " +
		"naming the field and changes nothing; of concurrent updates of one revision exactly one wins (the others are " +
		"Aborted); a restarted proxy serves the stored namespaces; the audit log has each change with its subject.", false},
	{AuthBackendCredentials, "v1", "auth", "The plugin authenticates to its backend with the credentials passed " +
		"apart from config: valid ones work; wrong, missing or empty ones fail Initialize (Unauthenticated, or " +
		"InvalidArgument naming the credential) without echoing a secret; a namespace's backend user cannot touch " +
		"another namespace's data or run dangerous commands.", false},
	{AuthRotation, "v1", "auth", "RotateCredentials replaces the backend credentials at run time without dropping " +
		"a call: old and new both work during the roll, the old ones may be revoked once it returns, and the plugin " +
		"keeps serving concurrent calls on its new credentials.", false},
}

// All returns every known capability, in a stable order.
func All() []Info { return slices.Clone(all) }

// Lookup returns the capability's Info.
func Lookup(n Name) (Info, bool) {
	for _, i := range all {
		if i.Name == n {
			return i, true
		}
	}
	return Info{}, false
}

// Known reports whether n is a capability this version of Prism knows.
func Known(n Name) bool { _, ok := Lookup(n); return ok }

// Family returns the interface family of a capability: "keyvalue" for "keyvalue.ttl".
func (n Name) Family() string {
	f, _, _ := strings.Cut(string(n), ".")
	return f
}

// String returns the name.
func (n Name) String() string { return string(n) }

// Set is a set of capability names.
type Set map[Name]bool

// NewSet returns a set holding names.
func NewSet(names ...Name) Set {
	s := Set{}
	for _, n := range names {
		s[n] = true
	}
	return s
}

// Declared returns the capabilities a plugin's Describe answer declares
// (the names as sent, known or not).
func Declared(d *lifecyclev1.DescribeResponse) Set {
	s := Set{}
	for _, c := range d.GetCapabilities() {
		s[Name(c.GetName())] = true
	}
	return s
}

// Has reports whether n is in the set.
func (s Set) Has(n Name) bool { return s[n] }

// Sorted returns the names in the set in sorted order.
func (s Set) Sorted() []Name {
	out := make([]Name, 0, len(s))
	for n := range s {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Parse turns a comma-separated list ("keyvalue.ttl,keyvalue.scan") into a
// set, rejecting unknown names.
func Parse(list string) (Set, error) {
	s := Set{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !Known(Name(f)) {
			return nil, fmt.Errorf("parse capabilities: unknown capability %q", f)
		}
		s[Name(f)] = true
	}
	return s, nil
}
