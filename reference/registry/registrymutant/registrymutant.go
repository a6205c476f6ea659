// Package registrymutant names the deliberate defects of the multicast
// registry coordinator (reference/registry) that the suite's own tests use
// as mutants: each must be caught by a spec of the registry suite
// (acceptance/mutants_test.go).
//
// This package only names them; it switches nothing on. The defects exist
// only in a binary built with -tags prism_mutants: there the coordinator
// builds in the one that PRISM_REGISTRY_MUTANT ([Env]) names. The default
// build (every shipped binary) neither holds the defects nor reads the
// variable, and does not link this package.
package registrymutant

import "github.com/prism-suite/prism/proto/capability"

// Env names the environment variable a prism_mutants build of prism-proxy
// reads to build a registry mutant into every registry coordinator.
const Env = "PRISM_REGISTRY_MUTANT"

// Names of the registry mutants.
const (
	FilterIgnoresClause = "filter-ignores-clause"
	NeMissingWrong      = "ne-missing-field-wrong"
	ExpiredEnumerated   = "expired-still-enumerated"
	ReplaceIgnored      = "replace-ignored"
	QuotaCountsExpired  = "quota-counts-expired"
	MulticastTwice      = "multicast-delivers-twice"
	DeliveredNoReceiver = "delivered-without-receiver"

	// Near misses of the filter language (SEMANTICS.md).
	ContainsListSubstring = "contains-list-substring"
	LteGteStrict          = "lte-gte-strict"
	EqCoercesTypes        = "eq-coerces-types"
	EqCaseInsensitive     = "eq-case-insensitive"
	StartsWithAnywhere    = "startswith-anywhere"
	ExistsEmptyAbsent     = "exists-empty-absent"
	IntComparedAsFloat    = "int-compared-as-float"

	// Operations that ignore expiry.
	ExpiredRegisterRefused   = "expired-register-refused"
	ExpiredHeartbeatRevives  = "expired-heartbeat-revives"
	ExpiredUnregisterExisted = "expired-unregister-existed"
	ExpiredReceiveOpens      = "expired-receive-opens"
	HeartbeatExpiresEarly    = "heartbeat-expires-early"

	// Fan-out that does not end by the caller's deadline.
	FanoutIgnoresDeadline = "fanout-ignores-deadline"
)

// Mutant is one deliberate defect of the coordinator.
type Mutant struct {
	// Name is the value of PRISM_REGISTRY_MUTANT.
	Name string
	// Breaks is the capability whose specs must catch it.
	Breaks capability.Name
	// Defect says what is broken.
	Defect string
}

var mutants = []Mutant{
	{FilterIgnoresClause, capability.RegistryBasic, "the top-level and of a filter ignores its last clause"},
	{NeMissingWrong, capability.RegistryBasic, "ne on a missing field is false (it must be not eq: true)"},
	{ExpiredEnumerated, capability.RegistryBasic, "an expired identity is still enumerated and targeted until the slot drops it"},
	{ReplaceIgnored, capability.RegistryBasic, "replace=false overwrites a live identity instead of AlreadyExists"},
	{QuotaCountsExpired, capability.RegistryBasic, "the quota counts expired identities"},
	{MulticastTwice, capability.RegistryMulticast, "at-most-once publishes every message twice"},
	{DeliveredNoReceiver, capability.RegistryMulticast, "at-most-once counts DELIVERED for a target without a live receiver"},
	{ContainsListSubstring, capability.RegistryBasic, "contains on a list matches a substring of an element, not only a whole element"},
	{LteGteStrict, capability.RegistryBasic, "<= and >= leave out equality (evaluated as < and >)"},
	{EqCoercesTypes, capability.RegistryBasic, "eq, ne and in coerce types: the string \"1\" equals the number 1 and \"true\" equals true"},
	{EqCaseInsensitive, capability.RegistryBasic, "eq and ne compare strings case-insensitively"},
	{StartsWithAnywhere, capability.RegistryBasic, "startswith matches its value anywhere in the string (as contains)"},
	{ExistsEmptyAbsent, capability.RegistryBasic, "exists is false for an empty string or an empty list"},
	{IntComparedAsFloat, capability.RegistryBasic, "integer operands are compared as float64, so 2^53+1 equals 2^53"},
	{ExpiredRegisterRefused, capability.RegistryBasic, "Register without replace answers AlreadyExists for an expired identity the slot still holds"},
	{ExpiredHeartbeatRevives, capability.RegistryBasic, "a heartbeat (replace) of an expired identity keeps its old registered_at, as if it had been live"},
	{ExpiredUnregisterExisted, capability.RegistryBasic, "Unregister reports existed=true for an expired identity the slot still holds"},
	{ExpiredReceiveOpens, capability.RegistryMulticast, "Receive opens the inbox of an expired identity the slot still holds"},
	{HeartbeatExpiresEarly, capability.RegistryBasic, "a heartbeat computes expires_at from registered_at instead of now, so a renewed identity expires early"},
	{FanoutIgnoresDeadline, capability.RegistryMulticast, "the fan-out ignores the caller's deadline (runs on context.Background with the default timeout)"},
}

// All returns the registry mutants, in a stable order.
func All() []Mutant { return append([]Mutant(nil), mutants...) }

// Names returns the names of the registry mutants, in a stable order.
func Names() []string {
	out := make([]string, 0, len(mutants))
	for _, m := range mutants {
		out = append(out, m.Name)
	}
	return out
}
