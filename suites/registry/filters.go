package registry

import (
	"fmt"
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
