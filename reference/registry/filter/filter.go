// Package filter is the Multicast Registry's filter language: validation
// against limits, evaluation over typed metadata, and a text form for the
// CLI that parses to the structured form of prism.registry.v1.Filter. The
// semantics are written down in SEMANTICS.md beside this file; this package
// is their one implementation.
package filter

import (
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"strings"

	"google.golang.org/protobuf/proto"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// Limits of a filter.
const (
	// MaxDepth is the deepest nesting: a lone condition has depth 1, and each
	// and/or/not around it adds one.
	MaxDepth = 5
	// MaxClauses is the most conditions in one filter.
	MaxClauses = 20
	// MaxRegexBytes is the longest regex pattern.
	MaxRegexBytes = 256
	// maxRegexInsts bounds the compiled program of a regex.
	maxRegexInsts = 2000
	// MaxInValues is the most candidates of one in.
	MaxInValues = 100
	// MaxNodes is the most nodes of one filter, of every kind (and, or,
	// not, condition): a filter of a million empty ands has no condition
	// but costs as much as a million.
	MaxNodes = 64
	// MaxFilterBytes is the largest encoded filter.
	MaxFilterBytes = 16 << 10
)

// Error is an invalid filter; Clause names where ("and[1].or[0]").
type Error struct {
	Clause string
	Reason string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Clause == "" {
		return "filter: " + e.Reason
	}
	return fmt.Sprintf("filter clause %s: %s", e.Clause, e.Reason)
}

// Compiled is a validated filter, ready to evaluate many times.
type Compiled struct {
	root *node
}

type node struct {
	kind    string // "cond", "and", "or", "not", "all"
	cond    *registryv1.Condition
	re      *regexp.Regexp
	members []*node
}

// Size bounds a filter's nodes (of every kind) and its encoded bytes. A
// namespace may set them below MaxNodes and MaxFilterBytes, never above.
type Size struct {
	Nodes int
	Bytes int
}

// DefaultSize is the largest filter: MaxNodes nodes, MaxFilterBytes bytes.
func DefaultSize() Size { return Size{Nodes: MaxNodes, Bytes: MaxFilterBytes} }

// Compile validates f against the limits (DefaultSize) and the operand
// rules and returns it ready to evaluate. A nil filter matches every
// identity.
func Compile(f *registryv1.Filter) (*Compiled, error) { return CompileWithin(f, DefaultSize()) }

// CompileWithin is Compile with size limits of the caller's, each at most
// the default (a larger one counts as the default).
func CompileWithin(f *registryv1.Filter, size Size) (*Compiled, error) {
	nodes, bytes := min(size.Nodes, MaxNodes), min(size.Bytes, MaxFilterBytes)
	// The node count stops early, so it comes first; sizing walks it all.
	if n := countNodes(f, nodes+1); n > nodes {
		return nil, &Error{Reason: fmt.Sprintf("more than %d nodes (and, or, not and conditions)", nodes)}
	}
	if n := proto.Size(f); n > bytes {
		return nil, &Error{Reason: fmt.Sprintf("%d bytes encoded, over the limit of %d", n, bytes)}
	}
	clauses := 0
	root, err := compile(f, "", 1, &clauses)
	if err != nil {
		return nil, err
	}
	return &Compiled{root: root}, nil
}

// countNodes counts f's nodes, stopping once it has counted stop.
func countNodes(f *registryv1.Filter, stop int) int {
	if f == nil || f.GetNode() == nil {
		return 0
	}
	n := 1
	var kids []*registryv1.Filter
	switch x := f.GetNode().(type) {
	case *registryv1.Filter_And:
		kids = x.And.GetFilters()
	case *registryv1.Filter_Or:
		kids = x.Or.GetFilters()
	case *registryv1.Filter_Not:
		kids = []*registryv1.Filter{x.Not}
	}
	for _, k := range kids {
		if n >= stop {
			return n
		}
		n += countNodes(k, stop-n)
	}
	return n
}

func child(path, part string) string {
	if path == "" {
		return part
	}
	return path + "." + part
}

func compile(f *registryv1.Filter, path string, depth int, clauses *int) (*node, error) {
	if f == nil || f.GetNode() == nil {
		if path == "" {
			return &node{kind: "all"}, nil
		}
		return nil, &Error{Clause: path, Reason: "empty filter node"}
	}
	if depth > MaxDepth {
		return nil, &Error{Clause: path, Reason: fmt.Sprintf("nesting deeper than %d", MaxDepth)}
	}
	switch n := f.GetNode().(type) {
	case *registryv1.Filter_Condition:
		*clauses++
		if *clauses > MaxClauses {
			return nil, &Error{Clause: path, Reason: fmt.Sprintf("more than %d conditions", MaxClauses)}
		}
		return compileCondition(n.Condition, child(path, "condition"))
	case *registryv1.Filter_And, *registryv1.Filter_Or:
		kind, list := "and", f.GetAnd()
		if _, ok := n.(*registryv1.Filter_Or); ok {
			kind, list = "or", f.GetOr()
		}
		out := &node{kind: kind}
		for i, m := range list.GetFilters() {
			c, err := compile(m, child(path, fmt.Sprintf("%s[%d]", kind, i)), depth+1, clauses)
			if err != nil {
				return nil, err
			}
			out.members = append(out.members, c)
		}
		return out, nil
	case *registryv1.Filter_Not:
		c, err := compile(n.Not, child(path, "not"), depth+1, clauses)
		if err != nil {
			return nil, err
		}
		return &node{kind: "not", members: []*node{c}}, nil
	}
	return nil, &Error{Clause: path, Reason: "unknown filter node"}
}

func compileCondition(c *registryv1.Condition, path string) (*node, error) {
	if c.GetField() == "" {
		return nil, &Error{Clause: path, Reason: "field must not be empty"}
	}
	path = fmt.Sprintf("%s (field %q)", path, c.GetField())
	n := &node{kind: "cond", cond: c}
	op := c.GetOp()
	needsValue := op != registryv1.Condition_OP_EXISTS && op != registryv1.Condition_OP_IN
	if needsValue && (c.GetValue() == nil || c.GetValue().GetKind() == nil) {
		return nil, &Error{Clause: path, Reason: fmt.Sprintf("%s needs a value", opName(op))}
	}
	switch op {
	case registryv1.Condition_OP_EQ, registryv1.Condition_OP_NE,
		registryv1.Condition_OP_LT, registryv1.Condition_OP_LTE, registryv1.Condition_OP_GT, registryv1.Condition_OP_GTE:
	case registryv1.Condition_OP_STARTSWITH, registryv1.Condition_OP_ENDSWITH, registryv1.Condition_OP_CONTAINS:
		if _, ok := c.GetValue().GetKind().(*registryv1.Value_StringValue); !ok {
			return nil, &Error{Clause: path, Reason: fmt.Sprintf("%s needs a string value", opName(op))}
		}
	case registryv1.Condition_OP_IN:
		if len(c.GetValues()) == 0 || len(c.GetValues()) > MaxInValues {
			return nil, &Error{Clause: path, Reason: fmt.Sprintf("in needs 1 to %d values, got %d", MaxInValues, len(c.GetValues()))}
		}
		for i, v := range c.GetValues() {
			if v.GetKind() == nil {
				return nil, &Error{Clause: path, Reason: fmt.Sprintf("in value %d is empty", i)}
			}
		}
	case registryv1.Condition_OP_REGEX:
		pat, ok := c.GetValue().GetKind().(*registryv1.Value_StringValue)
		if !ok {
			return nil, &Error{Clause: path, Reason: "regex needs a string pattern"}
		}
		re, err := compileRegex(pat.StringValue)
		if err != nil {
			return nil, &Error{Clause: path, Reason: err.Error()}
		}
		n.re = re
	case registryv1.Condition_OP_EXISTS:
	default:
		return nil, &Error{Clause: path, Reason: fmt.Sprintf("unknown operator %v", op)}
	}
	return n, nil
}

// compileRegex compiles an RE2 pattern within the size limits.
func compileRegex(pat string) (*regexp.Regexp, error) {
	if len(pat) > MaxRegexBytes {
		return nil, fmt.Errorf("regex of %d bytes exceeds the limit of %d", len(pat), MaxRegexBytes)
	}
	re, err := syntax.Parse(pat, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("regex: %v", err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, fmt.Errorf("regex: %v", err)
	}
	if len(prog.Inst) > maxRegexInsts {
		return nil, fmt.Errorf("regex compiles to %d instructions, more than the limit of %d", len(prog.Inst), maxRegexInsts)
	}
	return regexp.Compile(pat)
}

func opName(op registryv1.Condition_Op) string {
	return strings.ToLower(strings.TrimPrefix(op.String(), "OP_"))
}

// Match reports whether metadata satisfies the filter.
func (c *Compiled) Match(metadata map[string]*registryv1.Value) bool {
	return c.root.match(metadata)
}

func (n *node) match(md map[string]*registryv1.Value) bool {
	switch n.kind {
	case "all":
		return true
	case "and":
		for _, m := range n.members {
			if !m.match(md) {
				return false
			}
		}
		return true
	case "or":
		for _, m := range n.members {
			if m.match(md) {
				return true
			}
		}
		return false
	case "not":
		return !n.members[0].match(md)
	}
	return n.matchCondition(md)
}

func (n *node) matchCondition(md map[string]*registryv1.Value) bool {
	c := n.cond
	v, present := md[c.GetField()]
	present = present && v.GetKind() != nil
	switch c.GetOp() {
	case registryv1.Condition_OP_EXISTS:
		return present
	case registryv1.Condition_OP_NE:
		return !(present && equal(v, c.GetValue()))
	}
	if !present {
		return false
	}
	switch c.GetOp() {
	case registryv1.Condition_OP_EQ:
		return equal(v, c.GetValue())
	case registryv1.Condition_OP_LT:
		r, ok := compare(v, c.GetValue())
		return ok && r < 0
	case registryv1.Condition_OP_LTE:
		r, ok := compare(v, c.GetValue())
		return ok && r <= 0
	case registryv1.Condition_OP_GT:
		r, ok := compare(v, c.GetValue())
		return ok && r > 0
	case registryv1.Condition_OP_GTE:
		r, ok := compare(v, c.GetValue())
		return ok && r >= 0
	case registryv1.Condition_OP_STARTSWITH:
		s, ok := v.GetKind().(*registryv1.Value_StringValue)
		return ok && strings.HasPrefix(s.StringValue, c.GetValue().GetStringValue())
	case registryv1.Condition_OP_ENDSWITH:
		s, ok := v.GetKind().(*registryv1.Value_StringValue)
		return ok && strings.HasSuffix(s.StringValue, c.GetValue().GetStringValue())
	case registryv1.Condition_OP_CONTAINS:
		switch k := v.GetKind().(type) {
		case *registryv1.Value_StringValue:
			return strings.Contains(k.StringValue, c.GetValue().GetStringValue())
		case *registryv1.Value_ListValue:
			for _, e := range k.ListValue.GetValues() {
				if e == c.GetValue().GetStringValue() {
					return true
				}
			}
		}
		return false
	case registryv1.Condition_OP_IN:
		for _, cand := range c.GetValues() {
			if equal(v, cand) {
				return true
			}
		}
		return false
	case registryv1.Condition_OP_REGEX:
		s, ok := v.GetKind().(*registryv1.Value_StringValue)
		return ok && n.re.MatchString(s.StringValue)
	}
	return false
}

// number returns a value as a number: ints exactly, floats as they are.
func number(v *registryv1.Value) (i int64, f float64, isInt, ok bool) {
	switch k := v.GetKind().(type) {
	case *registryv1.Value_IntValue:
		return k.IntValue, 0, true, true
	case *registryv1.Value_FloatValue:
		return 0, k.FloatValue, false, true
	}
	return 0, 0, false, false
}

// compareIntFloat compares an int with a float exactly (no rounding of
// large ints); ok is false when f is NaN.
func compareIntFloat(i int64, f float64) (int, bool) {
	switch {
	case math.IsNaN(f):
		return 0, false
	case f >= 9223372036854775808.0:
		return -1, true
	case f < -9223372036854775808.0:
		return 1, true
	}
	t := math.Trunc(f)
	ti := int64(t)
	switch {
	case i < ti:
		return -1, true
	case i > ti:
		return 1, true
	case f > t:
		return -1, true
	case f < t:
		return 1, true
	}
	return 0, true
}

// compare orders two values of comparable types: numbers numerically,
// strings bytewise. ok is false for any other pair (never matches).
func compare(a, b *registryv1.Value) (int, bool) {
	ai, af, aInt, aNum := number(a)
	bi, bf, bInt, bNum := number(b)
	if aNum && bNum {
		switch {
		case aInt && bInt:
			return cmp3(ai, bi), true
		case aInt:
			return compareIntFloat(ai, bf)
		case bInt:
			r, ok := compareIntFloat(bi, af)
			return -r, ok
		}
		if math.IsNaN(af) || math.IsNaN(bf) {
			return 0, false
		}
		return cmp3(af, bf), true
	}
	as, aStr := a.GetKind().(*registryv1.Value_StringValue)
	bs, bStr := b.GetKind().(*registryv1.Value_StringValue)
	if aStr && bStr {
		return strings.Compare(as.StringValue, bs.StringValue), true
	}
	return 0, false
}

func cmp3[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// equal is eq: numbers numerically (1 equals 1.0), strings and bools by
// value, lists element by element; different types are never equal.
func equal(a, b *registryv1.Value) bool {
	if r, ok := compare(a, b); ok {
		return r == 0
	}
	switch ak := a.GetKind().(type) {
	case *registryv1.Value_BoolValue:
		bk, ok := b.GetKind().(*registryv1.Value_BoolValue)
		return ok && ak.BoolValue == bk.BoolValue
	case *registryv1.Value_ListValue:
		bk, ok := b.GetKind().(*registryv1.Value_ListValue)
		if !ok || len(ak.ListValue.GetValues()) != len(bk.ListValue.GetValues()) {
			return false
		}
		for i, e := range ak.ListValue.GetValues() {
			if e != bk.ListValue.GetValues()[i] {
				return false
			}
		}
		return true
	}
	return false
}
