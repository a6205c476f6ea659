package registry

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	filter "github.com/prism-suite/prism/proto/filtertext"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// operatorIdentities are the identities the operator specs filter: every
// op meets numbers of both kinds, strings, lists, bools, Unicode and
// missing fields.
var operatorIdentities = map[string]md{
	"i1":   {"n": I(1), "s": S("abc"), "l": L("x", "y"), "b": B(true), "u": S("é")},
	"f1":   {"n": F(1.0), "s": S("abd"), "l": L("y"), "b": B(false), "u": S("e\u0301")},
	"i2":   {"n": I(2), "s": S("b"), "l": L(), "b": B(true)},
	"f25":  {"n": F(2.5), "s": S("ABC")},
	"str1": {"n": S("1"), "s": S("1")},
	"big":  {"n": I(9007199254740993)},
	"none": {},
}

// operatorCases are text filters (SEMANTICS.md) and the identities each
// selects.
var operatorCases = []struct {
	text string
	want []string
}{
	{`n = 1`, []string{"i1", "f1"}},
	{`n == 1.0`, []string{"i1", "f1"}},
	{`n != 1`, []string{"i2", "f25", "str1", "big", "none"}},
	{`n < 2`, []string{"i1", "f1"}},
	{`n <= 2`, []string{"i1", "f1", "i2"}},
	{`n > 2`, []string{"f25", "big"}},
	{`n >= 2.5`, []string{"f25", "big"}},
	{`n > 9007199254740992.0`, []string{"big"}},
	{`n = "1"`, []string{"str1"}},
	{`n < "2"`, []string{"str1"}},
	{`s < "abd"`, []string{"i1", "f25", "str1"}},
	{`s >= "b"`, []string{"i2"}},
	{`s startswith "ab"`, []string{"i1", "f1"}},
	{`s endswith "c"`, []string{"i1"}},
	{`s contains "b"`, []string{"i1", "f1", "i2"}},
	{`l contains "y"`, []string{"i1", "f1"}},
	{`l = ["x", "y"]`, []string{"i1"}},
	{`l = []`, []string{"i2"}},
	{`n in [2, "1"]`, []string{"i2", "str1"}},
	{`s regex "^a.[cd]$"`, []string{"i1", "f1"}},
	{`exists l`, []string{"i1", "f1", "i2"}},
	{`not exists n`, []string{"none"}},
	{`b = true`, []string{"i1", "i2"}},
	{`b != true`, []string{"f1", "f25", "str1", "big", "none"}},
	{`b = 1`, nil},
	{`u = "é"`, []string{"i1"}},
	{`u = "e` + "\u0301" + `"`, []string{"f1"}},
	{`all`, []string{"i1", "f1", "i2", "f25", "str1", "big", "none"}},
	{`none`, nil},
	{`n = 1 or s = "b"`, []string{"i1", "f1", "i2"}},
	{`not (n = 1) and exists s`, []string{"i2", "f25", "str1"}},
	{`(n >= 1 and n < 2) or (l contains "x" and not b = false)`, []string{"i1", "f1"}},
}

func describeFilters(sess func() *session) {
	Context("filters", basic, Label("filter"), func() {
		var s *session
		BeforeEach(func() { s = sess() })

		It("selects exactly sensor-1 for {type: sensor, floor: 1} among the RFC-018 identities", func() {
			s.MustRegister("sensor-1", md{"type": S("sensor"), "floor": I(1)})
			s.MustRegister("sensor-2", md{"type": S("sensor"), "floor": I(2)})
			s.MustRegister("actuator-1", md{"type": S("actuator"), "floor": I(1)})
			Expect(s.MustEnumerateNames(and(eq("type", S("sensor")), eq("floor", I(1))))).To(Equal([]string{"sensor-1"}))
			Expect(s.MustEnumerateNames(eq("type", S("sensor")))).To(ConsistOf("sensor-1", "sensor-2"))
			Expect(s.MustEnumerateNames(eq("floor", I(1)))).To(ConsistOf("sensor-1", "actuator-1"))
		})

		It("evaluates every operator as SEMANTICS.md defines it: 1 equals 1.0, types never mix, ne is not eq, bytes order strings", func() {
			for name, m := range operatorIdentities {
				s.MustRegister(name, m)
			}
			var wrong []string
			for _, c := range operatorCases {
				f, err := filter.Parse(c.text)
				Expect(err).NotTo(HaveOccurred(), "parse %q", c.text)
				got := s.MustEnumerateNames(f)
				if !sameSet(got, c.want) {
					wrong = append(wrong, fmt.Sprintf("%s: got %v, want %v", c.text, got, c.want))
				}
			}
			Expect(wrong).To(BeEmpty(), "filters that selected the wrong identities")
		})

		It("selects values that just match every operator and never those that almost match, in the page and in total_count", func() {
			names := slices.Sorted(maps.Keys(nearMissIdentities))
			s.MustRegisterMany(names, func(i int) md { return nearMissIdentities[names[i]] })
			var wrong []string
			for _, c := range nearMisses() {
				ids, total := s.enumerate(s.rc, s.scoped(c.cond), 0)
				got := s.names(ids)
				wrong = append(wrong, nearMissWrong(c, got)...)
				if total != int64(len(got)) {
					wrong = append(wrong, fmt.Sprintf("%v: total_count %d, but the page holds %d", c, total, len(got)))
				}
				// A page shorter than the selection: total_count then
				// comes from a walk of its own.
				resp, err := s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: s.scoped(c.cond), PageSize: 1})
				Expect(err).NotTo(HaveOccurred(), "Enumerate %v with page_size 1", c)
				if resp.GetTotalCount() != int64(len(got)) {
					wrong = append(wrong, fmt.Sprintf("%v: total_count %d with page_size 1, want %d", c, resp.GetTotalCount(), len(got)))
				}
			}
			Expect(wrong).To(BeEmpty(), "near misses Enumerate got wrong")
		})

		It("treats an empty and as true and an empty or as false", func() {
			s.MustRegister("x", md{"k": S("v")})
			empty := func(list *registryv1.FilterList, isAnd bool) *registryv1.Filter {
				if isAnd {
					return &registryv1.Filter{Node: &registryv1.Filter_And{And: list}}
				}
				return &registryv1.Filter{Node: &registryv1.Filter_Or{Or: list}}
			}
			Expect(s.MustEnumerateNames(empty(&registryv1.FilterList{}, true))).To(Equal([]string{"x"}), "empty and")
			Expect(s.MustEnumerateNames(empty(&registryv1.FilterList{}, false))).To(BeEmpty(), "empty or")
			Expect(s.MustEnumerateNames(not(empty(&registryv1.FilterList{}, false)))).To(Equal([]string{"x"}), "not (empty or)")
		})

		It("accepts a filter at the limits: depth 5 and 20 conditions", func() {
			// The spec's identity is the only one whose k is the spec's
			// prefix, so these filters need no tag (which would add a level).
			s.MustRegister("x", md{"k": S(s.prefix)})
			mine := eq("k", S(s.prefix))
			deep := not(not(not(not(mine))))
			resp, err := s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: deep})
			Expect(err).NotTo(HaveOccurred(), "a filter of depth 5")
			Expect(s.names(resp.GetIdentities())).To(Equal([]string{"x"}))
			var many []*registryv1.Filter
			for i := range 19 {
				many = append(many, eq("k", S(fmt.Sprintf("%s-no-%d", s.prefix, i))))
			}
			resp, err = s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: or(append(many, mine)...)})
			Expect(err).NotTo(HaveOccurred(), "a filter of 20 conditions")
			Expect(s.names(resp.GetIdentities())).To(Equal([]string{"x"}))
		})

		It("answers InvalidArgument naming the clause for an invalid filter, in Enumerate and Multicast", func() {
			c := eq("k", I(1))
			var twentyOne []*registryv1.Filter
			for range 21 {
				twentyOne = append(twentyOne, c)
			}
			cases := []struct {
				f      *registryv1.Filter
				clause string
			}{
				{not(not(not(not(not(c))))), "not.not.not.not.not"},
				{or(twentyOne...), "or[20]"},
				{and(c, cond("k", registryv1.Condition_OP_REGEX, S("a("))), "and[1].condition"},
				{and(c, cond("k", registryv1.Condition_OP_REGEX, S(strings.Repeat("a", 257)))), "and[1].condition"},
				{or(c, and(c, cond("k", registryv1.Condition_OP_STARTSWITH, I(1)))), "or[1].and[1].condition"},
				{and(c, &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{Field: "k",
					Op: registryv1.Condition_OP_IN}}}), "and[1].condition"},
				{and(c, cond("", registryv1.Condition_OP_EQ, I(1))), "and[1].condition"},
				{and(c, cond("k", registryv1.Condition_OP_EQ, nil)), "and[1].condition"},
				{and(c, &registryv1.Filter{}), "and[1]"},
			}
			for _, tc := range cases {
				_, err := s.rc.Enumerate(s.ctx(), &registryv1.EnumerateRequest{Filter: tc.f})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, tc.clause), "Enumerate with an invalid filter at %s", tc.clause)
				_, err = s.rc.Multicast(s.ctx(), &registryv1.MulticastRequest{Filter: tc.f, Payload: []byte("x")})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, tc.clause), "Multicast with an invalid filter at %s", tc.clause)
			}
		})
	})
}

func sameSet(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	seen := map[string]int{}
	for _, g := range got {
		seen[g]++
	}
	for _, w := range want {
		if seen[w] != 1 {
			return false
		}
	}
	return true
}

// nearMissIdentities hold one field, v, whose values sit next to each
// other: a string and its case, prefix, suffix, extension and trailing
// space; a number as int, float and text; a bool and its text; zero values;
// integers beyond float64's exact range; lists and their elements; Unicode
// in two normal forms. Two hold no v: "absent" (v's value under another
// field) and "dotted" (fields "v.x" and "V", whose names are near v's).
var nearMissIdentities = map[string]md{
	"s-abc":       {"v": S("abc")},
	"s-ABC":       {"v": S("ABC")},
	"s-ab":        {"v": S("ab")},
	"s-bc":        {"v": S("bc")},
	"s-abcd":      {"v": S("abcd")},
	"s-abc-space": {"v": S("abc ")},
	"s-empty":     {"v": S("")},
	"s-1":         {"v": S("1")},
	"s-true":      {"v": S("true")},
	"s-nfc":       {"v": S("\u00e9")},
	"s-nfd":       {"v": S("e\u0301")},
	"i-0":         {"v": I(0)},
	"i-1":         {"v": I(1)},
	"f-1":         {"v": F(1.0)},
	"i-10":        {"v": I(10)},
	"f-0.1":       {"v": F(0.1)},
	"i-2^53":      {"v": I(1 << 53)},
	"i-2^53+1":    {"v": I(1<<53 + 1)},
	"b-true":      {"v": B(true)},
	"b-false":     {"v": B(false)},
	"l-ab-c":      {"v": L("ab", "c")},
	"l-ab-empty":  {"v": L("ab", "")},
	"l-empty":     {"v": L()},
	"absent":      {"w": S("abc")},
	"dotted":      {"v.x": S("abc"), "V": S("abc")},
}

// nearMiss is one condition with the identities that just match it and
// those that almost do and must not.
type nearMiss struct {
	cond        *registryv1.Filter
	match, miss []string
}

func (n nearMiss) String() string { return filterText(n.cond) }

// filterText writes a condition, or not of one, for a failure message.
func filterText(f *registryv1.Filter) string {
	if f.GetNot() != nil {
		return "not " + filterText(f.GetNot())
	}
	c := f.GetCondition()
	op := strings.ToLower(strings.TrimPrefix(c.GetOp().String(), "OP_"))
	if c.GetOp() == registryv1.Condition_OP_IN {
		var vs []string
		for _, v := range c.GetValues() {
			vs = append(vs, valueText(v))
		}
		return fmt.Sprintf("%q in [%s]", c.GetField(), strings.Join(vs, ", "))
	}
	if c.GetOp() == registryv1.Condition_OP_EXISTS {
		return fmt.Sprintf("exists %q", c.GetField())
	}
	return fmt.Sprintf("%q %s %s", c.GetField(), op, valueText(c.GetValue()))
}

// valueText writes a value with its type, so 1, 1.0 and "1" read apart.
func valueText(v *registryv1.Value) string {
	switch k := v.GetKind().(type) {
	case *registryv1.Value_StringValue:
		return strconv.Quote(k.StringValue)
	case *registryv1.Value_IntValue:
		return "int " + strconv.FormatInt(k.IntValue, 10)
	case *registryv1.Value_FloatValue:
		return "float " + strconv.FormatFloat(k.FloatValue, 'g', -1, 64)
	case *registryv1.Value_BoolValue:
		return "bool " + strconv.FormatBool(k.BoolValue)
	case *registryv1.Value_ListValue:
		return fmt.Sprintf("list %q", k.ListValue.GetValues())
	}
	return "<none>"
}

// nearMisses covers every operator of SEMANTICS.md with values that almost
// match.
func nearMisses() []nearMiss {
	op := func(o registryv1.Condition_Op) func(string, *registryv1.Value) *registryv1.Filter {
		return func(f string, v *registryv1.Value) *registryv1.Filter { return cond(f, o, v) }
	}
	ne, lt, lte, gt, gte := op(registryv1.Condition_OP_NE), op(registryv1.Condition_OP_LT), op(registryv1.Condition_OP_LTE),
		op(registryv1.Condition_OP_GT), op(registryv1.Condition_OP_GTE)
	startswith, endswith, contains, regex := op(registryv1.Condition_OP_STARTSWITH), op(registryv1.Condition_OP_ENDSWITH),
		op(registryv1.Condition_OP_CONTAINS), op(registryv1.Condition_OP_REGEX)
	in := func(f string, vs ...*registryv1.Value) *registryv1.Filter {
		return &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{Field: f, Op: registryv1.Condition_OP_IN, Values: vs}}}
	}
	exists := func(f string) *registryv1.Filter { return cond(f, registryv1.Condition_OP_EXISTS, nil) }
	up, down := math.Inf(1), math.Inf(-1)
	const big = 1 << 53
	m := func(names ...string) []string { return names }
	return []nearMiss{
		// eq: whole value, same type, same bytes.
		{eq("v", S("abc")), m("s-abc"), m("s-ABC", "s-ab", "s-bc", "s-abcd", "s-abc-space", "l-ab-c", "absent", "dotted")},
		{eq("v", S("")), m("s-empty"), m("l-empty", "i-0", "b-false", "absent")},
		{eq("v", I(1)), m("i-1", "f-1"), m("s-1", "b-true", "i-0", "i-10")},
		{eq("v", F(1.0)), m("i-1", "f-1"), m("s-1", "b-true")},
		{eq("v", S("1")), m("s-1"), m("i-1", "f-1")},
		{eq("v", B(true)), m("b-true"), m("s-true", "i-1", "f-1", "b-false")},
		{eq("v", S("true")), m("s-true"), m("b-true")},
		{eq("v", B(false)), m("b-false"), m("i-0", "s-empty", "l-empty", "absent")},
		{eq("v", I(0)), m("i-0"), m("b-false", "s-empty", "l-empty", "absent")},
		{eq("v", I(big)), m("i-2^53"), m("i-2^53+1")},
		{eq("v", I(big+1)), m("i-2^53+1"), m("i-2^53")},
		{eq("v", F(big)), m("i-2^53"), m("i-2^53+1")},
		{eq("v", F(0.1)), m("f-0.1"), nil},
		{eq("v", F(math.Nextafter(0.1, up))), nil, m("f-0.1")},
		{eq("v", L("ab", "c")), m("l-ab-c"), m("l-ab-empty")},
		{eq("v", L("c", "ab")), nil, m("l-ab-c")},
		{eq("v", L("ab")), nil, m("l-ab-c", "l-ab-empty")},
		{eq("v", S("ab")), m("s-ab"), m("l-ab-c", "l-ab-empty", "s-abc")},
		{eq("v", L()), m("l-empty"), m("s-empty", "absent")},
		{eq("v", S("\u00e9")), m("s-nfc"), m("s-nfd")},
		{eq("v", S("e\u0301")), m("s-nfd"), m("s-nfc")},
		{eq("v.x", S("abc")), m("dotted"), m("s-abc")},
		{eq("V", S("abc")), m("dotted"), m("s-abc", "s-ABC")},
		// ne: exactly not eq, so true where the field is missing or of another type.
		{ne("v", S("abc")), m("s-ABC", "s-ab", "s-abcd", "s-abc-space", "l-ab-c", "i-1", "absent", "dotted"), m("s-abc")},
		{ne("v", I(1)), m("s-1", "b-true", "i-10", "absent"), m("i-1", "f-1")},
		{ne("v", B(true)), m("s-true", "b-false", "i-1", "absent"), m("b-true")},
		{ne("v", S("")), m("l-empty", "i-0", "b-false", "absent"), m("s-empty")},
		// lt, lte, gt, gte: the boundary itself, one off, one ulp off, int against float.
		{lt("v", I(10)), m("i-1", "i-0", "f-1"), m("i-10", "i-2^53")},
		{lt("v", I(11)), m("i-10"), nil},
		{lt("v", F(10.0)), nil, m("i-10")},
		{lt("v", F(math.Nextafter(10, up))), m("i-10"), nil},
		{lte("v", I(10)), m("i-10", "i-1"), m("i-2^53")},
		{lte("v", F(10.0)), m("i-10"), nil},
		{lte("v", I(9)), m("i-1"), m("i-10")},
		{lte("v", F(math.Nextafter(10, down))), nil, m("i-10")},
		{gt("v", I(10)), m("i-2^53"), m("i-10", "i-1")},
		{gt("v", I(9)), m("i-10"), nil},
		{gt("v", F(math.Nextafter(10, down))), m("i-10"), nil},
		{gte("v", I(10)), m("i-10"), m("i-1")},
		{gte("v", F(10.0)), m("i-10"), nil},
		{gte("v", I(11)), nil, m("i-10")},
		{gte("v", F(math.Nextafter(10, up))), nil, m("i-10")},
		{gt("v", I(big)), m("i-2^53+1"), m("i-2^53")},
		{gt("v", F(big)), m("i-2^53+1"), m("i-2^53")},
		{gte("v", I(big+1)), m("i-2^53+1"), m("i-2^53")},
		{lt("v", I(big+1)), m("i-2^53"), m("i-2^53+1")},
		{lte("v", F(big)), m("i-2^53"), m("i-2^53+1")},
		{lte("v", F(0.1)), m("f-0.1"), nil},
		{lt("v", F(0.1)), nil, m("f-0.1")},
		{gt("v", F(math.Nextafter(0.1, down))), m("f-0.1"), nil},
		{gte("v", F(math.Nextafter(0.1, up))), nil, m("f-0.1")},
		{lt("v", S("abc")), m("s-ab", "s-ABC", "s-empty", "s-1"), m("s-abc", "s-abcd")},
		{lte("v", S("abc")), m("s-abc", "s-ab"), m("s-abcd", "s-abc-space", "s-bc")},
		{gt("v", S("abc")), m("s-abcd", "s-abc-space", "s-bc"), m("s-abc", "s-ABC")},
		{gte("v", S("abc")), m("s-abc", "s-abcd"), m("s-ab", "s-ABC")},
		{lt("v", S("abc\x00")), m("s-abc"), m("s-abcd")},
		{lt("v", I(2)), m("i-1", "f-1"), m("s-1", "b-true", "b-false", "l-empty")},
		{gte("v", S("1")), m("s-1", "s-abc"), m("i-1", "i-10", "b-true")},
		{gte("v", B(false)), nil, m("b-false", "b-true")},
		{lte("v", S("true")), m("s-true"), m("b-true")},
		{lte("v", L()), nil, m("l-empty", "l-ab-c")},
		// startswith, endswith: bytes at that end, strings only.
		{startswith("v", S("ab")), m("s-abc", "s-ab", "s-abcd"), m("s-ABC", "s-bc", "l-ab-c", "l-ab-empty")},
		{startswith("v", S("abc")), m("s-abc", "s-abcd", "s-abc-space"), m("s-ab")},
		{startswith("v", S("bc")), m("s-bc"), m("s-abc")},
		{startswith("v", S("c")), nil, m("s-abc", "l-ab-c")},
		{startswith("v", S("")), m("s-abc", "s-empty"), m("l-empty", "i-0", "absent")},
		{startswith("v", S("1")), m("s-1"), m("i-1", "i-10")},
		{startswith("v", S("e")), m("s-nfd"), m("s-nfc")},
		{endswith("v", S("bc")), m("s-abc", "s-bc"), m("s-abcd", "s-abc-space", "s-ABC", "s-ab")},
		{endswith("v", S("abc")), m("s-abc"), m("s-bc", "s-abcd")},
		{endswith("v", S("c")), m("s-abc"), m("l-ab-c")},
		{endswith("v", S("")), m("s-empty", "s-abc"), m("l-empty", "absent")},
		{endswith("v", S("\u0301")), m("s-nfd"), m("s-nfc")},
		// contains: a substring of a string, a whole element of a list.
		{contains("v", S("ab")), m("s-abc", "s-ab", "l-ab-c", "l-ab-empty"), m("s-ABC", "s-bc")},
		{contains("v", S("a")), m("s-abc"), m("l-ab-c", "l-ab-empty")},
		{contains("v", S("b")), m("s-abc", "s-bc"), m("l-ab-c")},
		{contains("v", S("abc")), m("s-abc", "s-abcd"), m("l-ab-c", "s-ab")},
		{contains("v", S("ab,c")), nil, m("l-ab-c")},
		{contains("v", S("c")), m("l-ab-c", "s-abc"), m("l-ab-empty")},
		{contains("v", S("")), m("s-abc", "s-empty", "l-ab-empty"), m("l-ab-c", "l-empty", "i-0", "absent")},
		{contains("v", S("1")), m("s-1"), m("i-1", "i-10")},
		{contains("v", S("AB")), nil, m("s-abc", "l-ab-c")},
		// in: eq against each value.
		{in("v", S("abc"), S("x")), m("s-abc"), m("s-ABC", "s-ab", "s-abcd", "l-ab-c")},
		{in("v", I(1)), m("i-1", "f-1"), m("s-1", "b-true")},
		{in("v", S("1"), S("true")), m("s-1", "s-true"), m("i-1", "b-true")},
		{in("v", B(true)), m("b-true"), m("s-true", "i-1")},
		{in("v", S("ab"), S("c")), m("s-ab"), m("l-ab-c")},
		{in("v", S("")), m("s-empty"), m("l-empty", "absent")},
		{in("v", I(big)), m("i-2^53"), m("i-2^53+1")},
		// regex: RE2, unanchored unless anchored, strings only.
		{regex("v", S("b")), m("s-abc", "s-bc", "s-ab", "s-abcd"), m("s-ABC", "l-ab-c")},
		{regex("v", S("^b")), m("s-bc"), m("s-abc")},
		{regex("v", S("^abc$")), m("s-abc"), m("s-abcd", "s-abc-space", "s-ABC")},
		{regex("v", S("(?i)^abc$")), m("s-abc", "s-ABC"), m("s-abcd")},
		{regex("v", S("1")), m("s-1"), m("i-1", "i-10")},
		{regex("v", S("true")), m("s-true"), m("b-true")},
		{regex("v", S("^$")), m("s-empty"), m("l-empty", "absent")},
		{regex("v", S("^e")), m("s-nfd"), m("s-nfc")},
		// exists: present whatever the value, empty and false included.
		{exists("v"), m("s-empty", "l-empty", "b-false", "i-0", "s-abc"), m("absent", "dotted")},
		{exists("v.x"), m("dotted"), m("s-abc", "absent")},
		{not(exists("v")), m("absent", "dotted"), m("s-empty", "l-empty", "b-false", "i-0")},
	}
}

// nearMissWrong checks what one filter selected against its case.
func nearMissWrong(c nearMiss, got []string) []string {
	var wrong []string
	for _, n := range c.match {
		if !slices.Contains(got, n) {
			wrong = append(wrong, fmt.Sprintf("%v: %s must be selected, got %v", c, n, got))
		}
	}
	for _, n := range c.miss {
		if slices.Contains(got, n) {
			wrong = append(wrong, fmt.Sprintf("%v: %s must not be selected, got %v", c, n, got))
		}
	}
	return wrong
}
