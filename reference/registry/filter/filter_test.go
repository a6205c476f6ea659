package filter_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/registry/filter"
)

func str(s string) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_StringValue{StringValue: s}}
}
func num(i int64) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_IntValue{IntValue: i}}
}
func flt(f float64) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_FloatValue{FloatValue: f}}
}
func boolean(b bool) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_BoolValue{BoolValue: b}}
}
func list(s ...string) *registryv1.Value {
	return &registryv1.Value{Kind: &registryv1.Value_ListValue{ListValue: &registryv1.StringList{Values: s}}}
}

var md = map[string]*registryv1.Value{
	"type":   str("sensor"),
	"floor":  num(1),
	"temp":   flt(21.5),
	"big":    num(math.MaxInt64),
	"active": boolean(true),
	"tags":   list("lab", "north"),
	"name":   str("sensor-17"),
	"é":      str("\u00e9"),
	"nan":    flt(math.NaN()),
}

func match(t *testing.T, text string) bool {
	t.Helper()
	f, err := filter.Parse(text)
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	c, err := filter.Compile(f)
	if err != nil {
		t.Fatalf("Compile(%q): %v", text, err)
	}
	return c.Match(md)
}

func TestSemantics(t *testing.T) {
	cases := []struct {
		text string
		want bool
	}{
		{``, true},
		{`all`, true},
		{`none`, false},
		{`type = "sensor"`, true},
		{`type == "actuator"`, false},
		// numbers compare numerically across int and float
		{`floor = 1.0`, true},
		{`floor = 1`, true},
		{`temp > 21`, true},
		{`temp < 21.5`, false},
		{`temp <= 21.5`, true},
		{`floor in [2, 1.0]`, true},
		{`big > 9223372036854775806`, true},
		{`big = 9.223372036854775807e18`, false}, // the float is 2^63, one more than MaxInt64
		{`big < 9.3e18`, true},
		// NaN is neither equal nor ordered
		{`nan = 1`, false},
		{`nan != 1`, true},
		{`nan < 1 or nan >= 1`, false},
		// different types never match
		{`floor = "1"`, false},
		{`type > 1`, false},
		{`active = 1`, false},
		{`active = true`, true},
		{`active < true`, false},
		// strings compare by bytes
		{`type < "sensoz"`, true},
		{`type < "Sensor"`, false},
		{`"é" = "e\u0301"`, false},
		{`"é" = "\u00e9"`, true},
		// missing fields: false, except ne and exists
		{`missing = 1`, false},
		{`missing < 1`, false},
		{`missing startswith "a"`, false},
		{`missing in ["a"]`, false},
		{`missing != 1`, true},
		{`not missing = 1`, true},
		{`exists missing`, false},
		{`exists floor`, true},
		{`floor exists`, true},
		// ne is exactly not eq
		{`floor != 1`, false},
		{`floor != "1"`, true},
		// string ops
		{`name startswith "sensor-"`, true},
		{`name endswith "-17"`, true},
		{`name contains "or-1"`, true},
		{`tags contains "lab"`, true},
		{`tags contains "la"`, false},
		{`tags = ["lab", "north"]`, true},
		{`tags = ["north", "lab"]`, false},
		{`name regex "^sensor-[0-9]+$"`, true},
		{`name regex "^SENSOR"`, false},
		{`floor regex "1"`, false},
		// logic and precedence
		{`type = "sensor" and floor = 1`, true},
		{`type = "sensor" and floor = 2`, false},
		{`floor = 2 or type = "sensor"`, true},
		{`not type = "sensor" or floor = 1`, true},
		{`not (type = "sensor" or floor = 1)`, false},
		{`floor = 2 and type = "x" or floor = 1`, true},
		{`floor = 2 and (type = "x" or floor = 1)`, false},
		{`NOT TYPE = "sensor"`, true}, // keywords are case-insensitive, fields are not ("TYPE" is missing)
	}
	for _, c := range cases {
		if got := match(t, c.text); got != c.want {
			t.Errorf("%s: got %v, want %v", c.text, got, c.want)
		}
	}
}

func TestStructuredEmptyAndOr(t *testing.T) {
	and := &registryv1.Filter{Node: &registryv1.Filter_And{And: &registryv1.FilterList{}}}
	or := &registryv1.Filter{Node: &registryv1.Filter_Or{Or: &registryv1.FilterList{}}}
	for f, want := range map[*registryv1.Filter]bool{and: true, or: false, nil: true} {
		c, err := filter.Compile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Match(md); got != want {
			t.Errorf("%v: got %v, want %v", f, got, want)
		}
	}
}

func TestLimitsNameTheClause(t *testing.T) {
	deep := `a = 1`
	for range 5 {
		deep = "not (" + deep + ")"
	}
	var many []string
	for range 21 {
		many = append(many, "a = 1")
	}
	cases := map[string]string{
		deep:                        "nesting deeper than 5",
		strings.Join(many, " and "): "more than 20 conditions",
		`a regex "(" and b = 1`:     "and[0].condition (field \"a\"): regex",
		`b = 1 and a regex "` + strings.Repeat("a", 257) + `"`: "and[1].condition (field \"a\"): regex of 257 bytes",
		`a regex "(ab|cd){500}"`:                               "instructions",
		`a startswith 1`:                                       "startswith needs a string",
		`a contains true`:                                      "contains needs a string",
	}
	for text, want := range cases {
		f, err := filter.Parse(text)
		if err != nil {
			t.Errorf("Parse(%.40q): %v", text, err)
			continue
		}
		_, err = filter.Compile(f)
		var fe *filter.Error
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%.60q) = %v, want an error containing %q", text, err, want)
		}
	}
	// Depth 5 exactly is allowed.
	ok := `a = 1`
	for range 4 {
		ok = "not (" + ok + ")"
	}
	if _, err := filter.Compile(mustParse(t, ok)); err != nil {
		t.Errorf("depth 5 must be allowed: %v", err)
	}
	// So are exactly 20 conditions.
	if _, err := filter.Compile(mustParse(t, strings.Join(many[:20], " or "))); err != nil {
		t.Errorf("20 conditions must be allowed: %v", err)
	}
	// A structured condition without value, or with an unknown op.
	for _, c := range []*registryv1.Condition{{Field: "a", Op: registryv1.Condition_OP_EQ}, {Field: "a", Op: 99, Value: num(1)},
		{Field: "", Op: registryv1.Condition_OP_EXISTS}, {Field: "a", Op: registryv1.Condition_OP_IN}} {
		if _, err := filter.Compile(&registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: c}}); err == nil {
			t.Errorf("Compile(%v) accepted an invalid condition", c)
		}
	}
}

func mustParse(t *testing.T, s string) *registryv1.Filter {
	t.Helper()
	f, err := filter.Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return f
}

func TestParseErrors(t *testing.T) {
	for _, text := range []string{`type =`, `type "x"`, `(a = 1`, `a = 1)`, `a in 1`, `a in [1,`, `a = sensor`, `a = "x`,
		`a = [1]`, `and`, `a = 1 and`, "a = \"\xff\"", `a ~ 1`, strings.Repeat("(", 100) + "a = 1" + strings.Repeat(")", 100)} {
		if _, err := filter.Parse(text); err == nil {
			t.Errorf("Parse(%.40q) accepted invalid text", text)
		}
	}
}

func TestFormatRoundTrips(t *testing.T) {
	for _, text := range []string{`type = "sensor" and floor = 1`, `not (a = 1 or b != 2.5) and c in [1, "x", true]`,
		`tags contains "lab" or name regex "^s" or exists x`, `all`, `none`, `a = ["x", "y"]`, `"odd name" >= -3e-7`} {
		f := mustParse(t, text)
		back := mustParse(t, filter.Format(f))
		if !proto.Equal(f, back) {
			t.Errorf("%q formats as %q, which parses differently", text, filter.Format(f))
		}
	}
}

// TestCompileBoundsEveryNode: conditions are not the only cost; a filter
// made of empty ands (issue 13's filter bomb) is refused by its node count
// or its size, never walked a million times.
func TestCompileBoundsEveryNode(t *testing.T) {
	ands := func(n int) *registryv1.Filter {
		list := &registryv1.FilterList{}
		for range n {
			list.Filters = append(list.Filters, &registryv1.Filter{Node: &registryv1.Filter_And{And: &registryv1.FilterList{}}})
		}
		return &registryv1.Filter{Node: &registryv1.Filter_And{And: list}}
	}
	for _, tc := range []struct {
		name string
		f    *registryv1.Filter
		want string // "" = accepted
	}{
		{"63 empty ands under one", ands(filter.MaxNodes - 1), ""},
		{"64 empty ands under one", ands(filter.MaxNodes), "more than 64 nodes"},
		{"200 000 empty ands", ands(200_000), "more than 64 nodes"},
		{"one condition with a 20 KiB value", &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{
			Field: "f", Op: registryv1.Condition_OP_EQ,
			Value: &registryv1.Value{Kind: &registryv1.Value_StringValue{StringValue: strings.Repeat("v", 20<<10)}}}}}, "bytes encoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := filter.Compile(tc.f)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile = %v, want an error containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "filter") {
				t.Errorf("error %q does not name the filter", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Compile took %v", d)
			}
		})
	}
}
