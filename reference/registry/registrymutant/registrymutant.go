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
