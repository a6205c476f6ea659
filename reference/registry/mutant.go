package registry

import (
	"google.golang.org/protobuf/proto"

	"github.com/prism-suite/prism/proto/capability"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// MutantEnv names the environment variable prism-proxy reads to build a
// registry mutant into every registry coordinator. Test only: it exists so
// the registry suite can show it catches each defect.
const MutantEnv = "PRISM_REGISTRY_MUTANT"

// Names of the registry mutants.
const (
	MutantFilterIgnoresClause = "filter-ignores-clause"
	MutantNeMissingWrong      = "ne-missing-field-wrong"
	MutantExpiredEnumerated   = "expired-still-enumerated"
	MutantReplaceIgnored      = "replace-ignored"
	MutantQuotaCountsExpired  = "quota-counts-expired"
	MutantMulticastTwice      = "multicast-delivers-twice"
	MutantDeliveredNoReceiver = "delivered-without-receiver"
)

// Mutant is one deliberate defect of the coordinator.
type Mutant struct {
	// Name is the value of PRISM_REGISTRY_MUTANT.
	Name string
	// Breaks is the capability whose specs must catch it.
	Breaks capability.Name
	// Defect says what is broken.
	Defect string
	// LabelFilter selects the specs that catch it, so a test of the mutant
	// runs only those (they all certify Breaks).
	LabelFilter string
}

var mutants = []Mutant{
	{MutantFilterIgnoresClause, capability.RegistryBasic, "a filter's top-level and ignores its last clause",
		"registry.basic && filter"},
	{MutantNeMissingWrong, capability.RegistryBasic, "ne on a missing field is false (it must be not eq: true)",
		"registry.basic && filter"},
	{MutantExpiredEnumerated, capability.RegistryBasic, "an expired identity is still enumerated and targeted until the slot drops it",
		"registry.basic && expiry"},
	{MutantReplaceIgnored, capability.RegistryBasic, "replace=false overwrites a live identity instead of AlreadyExists",
		"registry.basic && replace"},
	{MutantQuotaCountsExpired, capability.RegistryBasic, "the quota counts expired identities",
		"registry.basic && quota"},
	{MutantMulticastTwice, capability.RegistryMulticast, "at-most-once publishes every message twice",
		"registry.multicast && delivery"},
	{MutantDeliveredNoReceiver, capability.RegistryMulticast, "at-most-once counts DELIVERED for a target without a live receiver",
		"registry.multicast && delivery"},
}

// Mutants returns the registry mutants, in a stable order.
func Mutants() []Mutant { return append([]Mutant(nil), mutants...) }

// LookupMutant returns the named mutant.
func LookupMutant(name string) (Mutant, bool) {
	for _, m := range mutants {
		if m.Name == name {
			return m, true
		}
	}
	return Mutant{}, false
}

func mutantNames() []string {
	var out []string
	for _, m := range mutants {
		out = append(out, m.Name)
	}
	return out
}

// mutateFilter applies the filter mutants to a copy of f.
func (c *Coordinator) mutateFilter(f *registryv1.Filter) *registryv1.Filter {
	switch c.mutant {
	case MutantFilterIgnoresClause:
		if and := f.GetAnd(); and != nil && len(and.GetFilters()) > 1 {
			f = proto.Clone(f).(*registryv1.Filter)
			f.GetAnd().Filters = f.GetAnd().Filters[:len(f.GetAnd().Filters)-1]
		}
	case MutantNeMissingWrong:
		f = proto.Clone(f).(*registryv1.Filter)
		f = neRequiresField(f)
	}
	return f
}

// neRequiresField rewrites every ne condition into "exists and ne".
func neRequiresField(f *registryv1.Filter) *registryv1.Filter {
	switch n := f.GetNode().(type) {
	case *registryv1.Filter_Condition:
		if n.Condition.GetOp() == registryv1.Condition_OP_NE {
			exists := &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{
				Field: n.Condition.GetField(), Op: registryv1.Condition_OP_EXISTS}}}
			return &registryv1.Filter{Node: &registryv1.Filter_And{And: &registryv1.FilterList{Filters: []*registryv1.Filter{exists, f}}}}
		}
	case *registryv1.Filter_And:
		for i, m := range n.And.GetFilters() {
			n.And.Filters[i] = neRequiresField(m)
		}
	case *registryv1.Filter_Or:
		for i, m := range n.Or.GetFilters() {
			n.Or.Filters[i] = neRequiresField(m)
		}
	case *registryv1.Filter_Not:
		n.Not = neRequiresField(n.Not)
	}
	return f
}
