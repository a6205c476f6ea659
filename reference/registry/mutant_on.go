//go:build prism_mutants

package registry

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
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

	registrymutant.ContainsListSubstring: mutantContainsListSubstring,
	registrymutant.LteGteStrict:          mutantLteGteStrict,
	registrymutant.EqCoercesTypes:        mutantEqCoercesTypes,
	registrymutant.EqCaseInsensitive:     mutantEqCaseInsensitive,
	registrymutant.StartsWithAnywhere:    mutantStartsWithAnywhere,
	registrymutant.ExistsEmptyAbsent:     mutantExistsEmptyAbsent,
	registrymutant.IntComparedAsFloat:    mutantIntComparedAsFloat,

	registrymutant.ExpiredRegisterRefused:   mutantExpiredRegisterRefused,
	registrymutant.ExpiredHeartbeatRevives:  mutantExpiredHeartbeatRevives,
	registrymutant.ExpiredUnregisterExisted: mutantExpiredUnregisterExisted,
	registrymutant.ExpiredReceiveOpens:      mutantExpiredReceiveOpens,
	registrymutant.HeartbeatExpiresEarly:    mutantHeartbeatExpiresEarly,
	registrymutant.FanoutIgnoresDeadline:    mutantFanoutIgnoresDeadline,
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
	case mutantContainsListSubstring, mutantLteGteStrict, mutantEqCoercesTypes, mutantEqCaseInsensitive,
		mutantStartsWithAnywhere, mutantExistsEmptyAbsent, mutantIntComparedAsFloat:
		if f == nil {
			break
		}
		f = mapConditions(proto.Clone(f).(*registryv1.Filter), c.nearMiss)
	}
	return f
}

// joinedPrefix starts the field a list is joined into for the
// contains-list-substring mutant: a control character, which no metadata
// field name may hold, so it never meets a real field.
const joinedPrefix = "\x00joined:"

// mutateMetadata gives the metadata mutants' view of a record: for
// contains-list-substring, each list also as one string of its elements.
func (c *Coordinator) mutateMetadata(md map[string]*registryv1.Value) map[string]*registryv1.Value {
	if c.mutant != mutantContainsListSubstring {
		return md
	}
	out := make(map[string]*registryv1.Value, 2*len(md))
	for k, v := range md {
		out[k] = v
		if l := v.GetListValue(); l != nil {
			out[joinedPrefix+k] = str(strings.Join(l.GetValues(), "\x1f"))
		}
	}
	return out
}

func str(s string) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_StringValue{StringValue: s}}
}

func condition(field string, op registryv1.Condition_Op, v *registryv1.Value) *registryv1.Filter {
	return &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{Field: field, Op: op, Value: v}}}
}

func list(fs ...*registryv1.Filter) *registryv1.FilterList {
	return &registryv1.FilterList{Filters: fs}
}

// nearMiss rewrites one condition the way the active near-miss mutant
// evaluates it.
func (c *Coordinator) nearMiss(cd *registryv1.Condition) *registryv1.Filter {
	self := &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: cd}}
	field, v := cd.GetField(), cd.GetValue()
	switch c.mutant {
	case mutantContainsListSubstring:
		if cd.GetOp() == registryv1.Condition_OP_CONTAINS {
			return &registryv1.Filter{Node: &registryv1.Filter_Or{Or: list(self,
				condition(joinedPrefix+field, registryv1.Condition_OP_CONTAINS, v))}}
		}
	case mutantLteGteStrict:
		switch cd.GetOp() {
		case registryv1.Condition_OP_LTE:
			cd.Op = registryv1.Condition_OP_LT
		case registryv1.Condition_OP_GTE:
			cd.Op = registryv1.Condition_OP_GT
		}
	case mutantEqCoercesTypes:
		switch cd.GetOp() {
		case registryv1.Condition_OP_EQ, registryv1.Condition_OP_NE:
			in := &registryv1.Condition{Field: field, Op: registryv1.Condition_OP_IN, Values: append([]*registryv1.Value{v}, coerced(v)...)}
			f := &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: in}}
			if cd.GetOp() == registryv1.Condition_OP_NE {
				return &registryv1.Filter{Node: &registryv1.Filter_Not{Not: f}}
			}
			return f
		case registryv1.Condition_OP_IN:
			for _, x := range cd.GetValues() {
				cd.Values = append(cd.Values, coerced(x)...)
			}
		}
	case mutantEqCaseInsensitive:
		s, ok := v.GetKind().(*registryv1.Value_StringValue)
		if !ok || (cd.GetOp() != registryv1.Condition_OP_EQ && cd.GetOp() != registryv1.Condition_OP_NE) {
			break
		}
		f := condition(field, registryv1.Condition_OP_REGEX, str("(?i)^"+regexp.QuoteMeta(s.StringValue)+"$"))
		if cd.GetOp() == registryv1.Condition_OP_NE {
			return &registryv1.Filter{Node: &registryv1.Filter_Not{Not: f}}
		}
		return f
	case mutantStartsWithAnywhere:
		if cd.GetOp() == registryv1.Condition_OP_STARTSWITH {
			cd.Op = registryv1.Condition_OP_CONTAINS
		}
	case mutantExistsEmptyAbsent:
		if cd.GetOp() == registryv1.Condition_OP_EXISTS {
			return &registryv1.Filter{Node: &registryv1.Filter_And{And: list(self,
				condition(field, registryv1.Condition_OP_NE, str("")),
				condition(field, registryv1.Condition_OP_NE, &registryv1.Value{Kind: &registryv1.Value_ListValue{ListValue: &registryv1.StringList{}}}))}}
		}
	case mutantIntComparedAsFloat:
		asFloat := func(x *registryv1.Value) *registryv1.Value {
			if i, ok := x.GetKind().(*registryv1.Value_IntValue); ok {
				return &registryv1.Value{Kind: &registryv1.Value_FloatValue{FloatValue: float64(i.IntValue)}}
			}
			return x
		}
		if v != nil {
			cd.Value = asFloat(v)
		}
		for i, x := range cd.GetValues() {
			cd.Values[i] = asFloat(x)
		}
	}
	return self
}

// coerced returns what a type-coercing comparison also takes v for: a
// number's decimal text, a numeric string's number, a bool's text, "true"
// or "false"'s bool.
func coerced(v *registryv1.Value) []*registryv1.Value {
	switch k := v.GetKind().(type) {
	case *registryv1.Value_IntValue:
		return []*registryv1.Value{str(strconv.FormatInt(k.IntValue, 10))}
	case *registryv1.Value_FloatValue:
		return []*registryv1.Value{str(strconv.FormatFloat(k.FloatValue, 'g', -1, 64))}
	case *registryv1.Value_BoolValue:
		return []*registryv1.Value{str(strconv.FormatBool(k.BoolValue))}
	case *registryv1.Value_StringValue:
		if i, err := strconv.ParseInt(k.StringValue, 10, 64); err == nil {
			return []*registryv1.Value{{Kind: &registryv1.Value_IntValue{IntValue: i}}}
		}
		if f, err := strconv.ParseFloat(k.StringValue, 64); err == nil {
			return []*registryv1.Value{{Kind: &registryv1.Value_FloatValue{FloatValue: f}}}
		}
		if b, err := strconv.ParseBool(k.StringValue); err == nil && (k.StringValue == "true" || k.StringValue == "false") {
			return []*registryv1.Value{{Kind: &registryv1.Value_BoolValue{BoolValue: b}}}
		}
	}
	return nil
}

// mapConditions replaces every condition of f (modified in place) by what
// fn returns for it.
func mapConditions(f *registryv1.Filter, fn func(*registryv1.Condition) *registryv1.Filter) *registryv1.Filter {
	switch n := f.GetNode().(type) {
	case *registryv1.Filter_Condition:
		return fn(n.Condition)
	case *registryv1.Filter_And:
		for i, m := range n.And.GetFilters() {
			n.And.Filters[i] = mapConditions(m, fn)
		}
	case *registryv1.Filter_Or:
		for i, m := range n.Or.GetFilters() {
			n.Or.Filters[i] = mapConditions(m, fn)
		}
	case *registryv1.Filter_Not:
		n.Not = mapConditions(n.Not, fn)
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
