package filter

import (
	"errors"

	"github.com/prism-suite/prism/proto/filtertext"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// MaxTextBytes is the longest text filter Parse accepts.
const MaxTextBytes = filtertext.MaxTextBytes

// Parse parses the text form (see SEMANTICS.md) into the structured form.
// The empty text is the empty filter (nil: matches everything). Parse only
// checks syntax; [Compile] checks limits and operands. The parser is
// proto/filtertext; its errors come back as *[Error].
func Parse(text string) (*registryv1.Filter, error) {
	f, err := filtertext.Parse(text)
	var te *filtertext.Error
	if errors.As(err, &te) {
		return nil, &Error{Reason: te.Reason}
	}
	return f, err
}

// Format renders f in the text form, so that Parse(Format(f)) gives back
// what Parse produced (see [filtertext.Format]).
func Format(f *registryv1.Filter) string { return filtertext.Format(f) }
