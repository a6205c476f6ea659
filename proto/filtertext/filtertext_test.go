package filtertext_test

import (
	"errors"
	"testing"

	"github.com/prism-suite/prism/proto/filtertext"
)

func TestParseFormatRoundTrip(t *testing.T) {
	for _, text := range []string{
		`type = "sensor"`,
		`floor >= 1 and (name startswith "a" or not active = true)`,
		`tags contains "x"`,
	} {
		f, err := filtertext.Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q): %v", text, err)
		}
		again, err := filtertext.Parse(filtertext.Format(f))
		if err != nil || filtertext.Format(again) != filtertext.Format(f) {
			t.Errorf("Parse(Format(Parse(%q))) = %v, %v; want the same filter", text, again, err)
		}
	}
	if f, err := filtertext.Parse(""); f != nil || err != nil {
		t.Errorf("Parse(\"\") = %v, %v; want nil, nil", f, err)
	}
	var e *filtertext.Error
	if _, err := filtertext.Parse(`floor >=`); !errors.As(err, &e) {
		t.Errorf("Parse of a broken filter: %v, want *Error", err)
	}
}
