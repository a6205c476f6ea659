package filter_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/registry/filter"
)

// FuzzParse checks that any text parses or fails with an error — never a
// panic or a hang — that what parses compiles or fails cleanly, evaluates,
// and survives a Format round trip.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`type = "sensor" and floor = 1`, `not (a = 1 or b != 2.5)`, `a in [1, "x", true]`,
		`name regex "^s[0-9]+$"`, `exists x`, `all`, `none`, `t contains 'x'`, `a = ["x"]`, `((((((a=1))))))`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		parsed, err := filter.Parse(text)
		if err != nil {
			return
		}
		if c, err := filter.Compile(parsed); err == nil {
			_ = c.Match(md)
		}
		text2 := filter.Format(parsed)
		if len(text2) > filter.MaxTextBytes {
			return // escaping may grow a valid text beyond the limit
		}
		again, err := filter.Parse(text2)
		if err != nil {
			t.Fatalf("Format(%q) = %q does not parse: %v", text, filter.Format(parsed), err)
		}
		if !proto.Equal(parsed, again) {
			t.Fatalf("%q: round trip through %q changed the filter", text, filter.Format(parsed))
		}
	})
}

// FuzzMatch evaluates parsed filters against fuzzed metadata of every type.
func FuzzMatch(f *testing.F) {
	f.Add(`a = 1 or b contains "x"`, "a", int64(1), 1.0, "x", true)
	f.Add(`a regex "^[a-z]+$" and not c < 2.5`, "c", int64(-3), -2.5, "abc", false)
	f.Add(`a in [1, "1", true] and exists b`, "b", int64(9), 9.0, "", true)
	f.Fuzz(func(t *testing.T, text, field string, i int64, fl float64, s string, b bool) {
		parsed, err := filter.Parse(text)
		if err != nil {
			return
		}
		c, err := filter.Compile(parsed)
		if err != nil {
			return
		}
		metadata := map[string]*registryv1.Value{
			field: str(s), "a": num(i), "b": flt(fl), "c": boolean(b), "d": list(s, field),
		}
		_ = c.Match(metadata)
	})
}
