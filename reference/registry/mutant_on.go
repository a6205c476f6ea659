//go:build prism_mutants

package registry

import (
	"fmt"
	"os"
	"strings"

	"google.golang.org/protobuf/proto"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/registry/registrymutant"
)

var mutantIDs = map[string]mutantID{
	registrymutant.FilterIgnoresClause: mutantFilterIgnoresClause,
	registrymutant.NeMissingWrong:      mutantNeMissingWrong,
	registrymutant.ExpiredEnumerated:   mutantExpiredEnumerated,
	registrymutant.ReplaceIgnored:      mutantReplaceIgnored,
	registrymutant.QuotaCountsExpired:  mutantQuotaCountsExpired,
	registrymutant.MulticastTwice:      mutantMulticastTwice,
	registrymutant.DeliveredNoReceiver: mutantDeliveredNoReceiver,
}

// setupMutant builds in the mutant [WithMutant] or, without that option,
// PRISM_REGISTRY_MUTANT names (test builds only).
func (c *Coordinator) setupMutant(ns string) error {
	if !c.mutantSet {
		c.mutantName = os.Getenv(registrymutant.Env)
	}
	if c.mutantName == "" {
		return nil
	}
	id, ok := mutantIDs[c.mutantName]
	if !ok {
		return fmt.Errorf("set up registry mutant: %s=%q is not one of %s", registrymutant.Env, c.mutantName,
			strings.Join(registrymutant.Names(), ", "))
	}
	c.mutant = id
	c.log.Warn("registry mutant active: this coordinator is deliberately broken (test only)", "namespace", ns, "mutant", c.mutantName)
	return nil
}

// has reports whether mutant m is built into the coordinator.
func (c *Coordinator) has(m mutantID) bool { return c.mutant == m }

// mutateFilter applies the filter mutants to a copy of f.
func (c *Coordinator) mutateFilter(f *registryv1.Filter) *registryv1.Filter {
	switch c.mutant {
	case mutantFilterIgnoresClause:
		if and := f.GetAnd(); and != nil && len(and.GetFilters()) > 1 {
			f = proto.Clone(f).(*registryv1.Filter)
			f.GetAnd().Filters = f.GetAnd().Filters[:len(f.GetAnd().Filters)-1]
		}
	case mutantNeMissingWrong:
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
