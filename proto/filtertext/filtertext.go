// Package filtertext is the text form of Multicast Registry filters
// ("type = \"sensor\" and floor >= 1"): Parse turns it into the structured
// prism.registry.v1.Filter the Registry service takes, and Format turns one
// back. The language is defined in reference/registry/filter/SEMANTICS.md;
// the text form is a client convenience (the wire carries the structured
// form), shared by the reference proxy's tools, the Go client and the
// suites, which is why it lives beside the protocol.
package filtertext

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// MaxTextBytes is the longest text filter Parse accepts.
const MaxTextBytes = 4096

var ops = map[string]registryv1.Condition_Op{
	"=": registryv1.Condition_OP_EQ, "==": registryv1.Condition_OP_EQ, "!=": registryv1.Condition_OP_NE,
	"<": registryv1.Condition_OP_LT, "<=": registryv1.Condition_OP_LTE, ">": registryv1.Condition_OP_GT, ">=": registryv1.Condition_OP_GTE,
	"startswith": registryv1.Condition_OP_STARTSWITH, "endswith": registryv1.Condition_OP_ENDSWITH,
	"contains": registryv1.Condition_OP_CONTAINS, "regex": registryv1.Condition_OP_REGEX, "in": registryv1.Condition_OP_IN,
}

type token struct {
	kind string // "ident", "string", "number", "punct", "eof"
	text string
	pos  int
}

type parser struct {
	toks []token
	i    int
}

// Error is a syntax error in a text filter.
type Error struct {
	// Reason says what is wrong and where (the byte offset).
	Reason string
}

// Error implements error.
func (e *Error) Error() string { return "filter: " + e.Reason }

// Parse parses the text form (see SEMANTICS.md) into the structured form.
// The empty text is the empty filter (nil: matches everything). Parse only
// checks syntax; the registry (reference/registry/filter.Compile) checks
// limits and operands.
func Parse(text string) (*registryv1.Filter, error) {
	if len(text) > MaxTextBytes {
		return nil, &Error{Reason: fmt.Sprintf("text of %d bytes exceeds the limit of %d", len(text), MaxTextBytes)}
	}
	if !utf8.ValidString(text) {
		return nil, &Error{Reason: "text is not valid UTF-8"}
	}
	toks, err := lex(text)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if p.peek().kind == "eof" {
		return nil, nil
	}
	f, err := p.or(1)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != "eof" {
		return nil, p.errorf(t, "unexpected %q", t.text)
	}
	return f, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *parser) errorf(t token, format string, args ...any) error {
	return &Error{Reason: fmt.Sprintf("at byte %d: %s", t.pos, fmt.Sprintf(format, args...))}
}

func (p *parser) keyword(word string) bool {
	t := p.peek()
	return t.kind == "ident" && strings.EqualFold(t.text, word)
}

// maxParseDepth stops pathological nesting before Compile's own limit.
const maxParseDepth = 64

func (p *parser) or(depth int) (*registryv1.Filter, error) {
	first, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	list := []*registryv1.Filter{first}
	for p.keyword("or") {
		p.next()
		f, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		list = append(list, f)
	}
	if len(list) == 1 {
		return first, nil
	}
	return &registryv1.Filter{Node: &registryv1.Filter_Or{Or: &registryv1.FilterList{Filters: list}}}, nil
}

func (p *parser) and(depth int) (*registryv1.Filter, error) {
	first, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	list := []*registryv1.Filter{first}
	for p.keyword("and") {
		p.next()
		f, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		list = append(list, f)
	}
	if len(list) == 1 {
		return first, nil
	}
	return &registryv1.Filter{Node: &registryv1.Filter_And{And: &registryv1.FilterList{Filters: list}}}, nil
}

func (p *parser) unary(depth int) (*registryv1.Filter, error) {
	if depth > maxParseDepth {
		return nil, p.errorf(p.peek(), "nesting deeper than %d", maxParseDepth)
	}
	t := p.peek()
	switch {
	case p.keyword("not"):
		p.next()
		f, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &registryv1.Filter{Node: &registryv1.Filter_Not{Not: f}}, nil
	case t.kind == "punct" && t.text == "(":
		p.next()
		f, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != "punct" || c.text != ")" {
			return nil, p.errorf(c, "want \")\", got %q", c.text)
		}
		return f, nil
	case p.keyword("all"), p.keyword("none"):
		// The empty and (true) and the empty or (false).
		if strings.EqualFold(p.next().text, "all") {
			return &registryv1.Filter{Node: &registryv1.Filter_And{And: &registryv1.FilterList{}}}, nil
		}
		return &registryv1.Filter{Node: &registryv1.Filter_Or{Or: &registryv1.FilterList{}}}, nil
	case p.keyword("exists"):
		p.next()
		field, err := p.field()
		if err != nil {
			return nil, err
		}
		return cond(&registryv1.Condition{Field: field, Op: registryv1.Condition_OP_EXISTS}), nil
	}
	return p.condition()
}

func cond(c *registryv1.Condition) *registryv1.Filter {
	return &registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: c}}
}

func (p *parser) field() (string, error) {
	t := p.next()
	switch t.kind {
	case "ident":
		return t.text, nil
	case "string":
		return t.text, nil
	}
	return "", p.errorf(t, "want a field name, got %q", t.text)
}

func (p *parser) condition() (*registryv1.Filter, error) {
	field, err := p.field()
	if err != nil {
		return nil, err
	}
	t := p.next()
	if t.kind == "ident" && strings.EqualFold(t.text, "exists") {
		return cond(&registryv1.Condition{Field: field, Op: registryv1.Condition_OP_EXISTS}), nil
	}
	op, ok := ops[strings.ToLower(t.text)]
	if !ok || (t.kind != "punct" && t.kind != "ident") {
		return nil, p.errorf(t, "want an operator after %q, got %q", field, t.text)
	}
	c := &registryv1.Condition{Field: field, Op: op}
	if op == registryv1.Condition_OP_IN {
		if b := p.next(); b.kind != "punct" || b.text != "[" {
			return nil, p.errorf(b, "in wants [values], got %q", b.text)
		}
		for {
			v, err := p.scalar()
			if err != nil {
				return nil, err
			}
			c.Values = append(c.Values, v)
			sep := p.next()
			if sep.kind == "punct" && sep.text == "]" {
				break
			}
			if sep.kind != "punct" || sep.text != "," {
				return nil, p.errorf(sep, "want \",\" or \"]\", got %q", sep.text)
			}
		}
		return cond(c), nil
	}
	v, err := p.literal()
	if err != nil {
		return nil, err
	}
	c.Value = v
	return cond(c), nil
}

// literal is a scalar or a list of strings.
func (p *parser) literal() (*registryv1.Value, error) {
	if t := p.peek(); t.kind == "punct" && t.text == "[" {
		p.next()
		list := &registryv1.StringList{}
		if e := p.peek(); e.kind == "punct" && e.text == "]" {
			p.next()
			return &registryv1.Value{Kind: &registryv1.Value_ListValue{ListValue: list}}, nil
		}
		for {
			s := p.next()
			if s.kind != "string" {
				return nil, p.errorf(s, "a list holds strings, got %q", s.text)
			}
			list.Values = append(list.Values, s.text)
			sep := p.next()
			if sep.kind == "punct" && sep.text == "]" {
				return &registryv1.Value{Kind: &registryv1.Value_ListValue{ListValue: list}}, nil
			}
			if sep.kind != "punct" || sep.text != "," {
				return nil, p.errorf(sep, "want \",\" or \"]\", got %q", sep.text)
			}
		}
	}
	return p.scalar()
}

func (p *parser) scalar() (*registryv1.Value, error) {
	t := p.next()
	switch t.kind {
	case "string":
		return &registryv1.Value{Kind: &registryv1.Value_StringValue{StringValue: t.text}}, nil
	case "number":
		if !strings.ContainsAny(t.text, ".eE") {
			if i, err := strconv.ParseInt(t.text, 10, 64); err == nil {
				return &registryv1.Value{Kind: &registryv1.Value_IntValue{IntValue: i}}, nil
			}
		}
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, p.errorf(t, "bad number %q", t.text)
		}
		return &registryv1.Value{Kind: &registryv1.Value_FloatValue{FloatValue: f}}, nil
	case "ident":
		switch strings.ToLower(t.text) {
		case "true":
			return &registryv1.Value{Kind: &registryv1.Value_BoolValue{BoolValue: true}}, nil
		case "false":
			return &registryv1.Value{Kind: &registryv1.Value_BoolValue{BoolValue: false}}, nil
		}
		return nil, p.errorf(t, "want a value, got %q (quote strings: \"%s\")", t.text, t.text)
	}
	return nil, p.errorf(t, "want a value, got %q", t.text)
}

func isIdent(r rune, first bool) bool {
	if r == '_' || unicode.IsLetter(r) {
		return true
	}
	return !first && (unicode.IsDigit(r) || r == '.' || r == '-' || r == '/')
}

func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return nil, &Error{Reason: fmt.Sprintf("at byte %d: not UTF-8", i)}
		case unicode.IsSpace(r):
			i += size
		case r == '"' || r == '\'':
			j, text, err := lexString(s, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{"string", text, i})
			i = j
		case r == '-' || (r >= '0' && r <= '9'):
			j := i + 1
			for j < len(s) && strings.IndexByte("0123456789.eE+-", s[j]) >= 0 {
				if (s[j] == '+' || s[j] == '-') && s[j-1] != 'e' && s[j-1] != 'E' {
					break
				}
				j++
			}
			toks = append(toks, token{"number", s[i:j], i})
			i = j
		case isIdent(r, true):
			j := i + size
			for j < len(s) {
				r2, n := utf8.DecodeRuneInString(s[j:])
				if !isIdent(r2, false) {
					break
				}
				j += n
			}
			toks = append(toks, token{"ident", s[i:j], i})
			i = j
		default:
			two := ""
			if i+1 < len(s) {
				two = s[i : i+2]
			}
			switch {
			case two == "==" || two == "!=" || two == "<=" || two == ">=":
				toks = append(toks, token{"punct", two, i})
				i += 2
			case strings.ContainsRune("=<>()[],", r):
				toks = append(toks, token{"punct", string(r), i})
				i++
			default:
				return nil, &Error{Reason: fmt.Sprintf("at byte %d: unexpected %q", i, r)}
			}
		}
	}
	return append(toks, token{"eof", "end of filter", len(s)}), nil
}

// lexString reads a "double-quoted" string with Go escapes or a
// 'single-quoted' one taken literally.
func lexString(s string, i int) (int, string, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q == '"':
			j++
		case s[j] == q:
			if q == '\'' {
				return j + 1, s[i+1 : j], nil
			}
			text, err := strconv.Unquote(s[i : j+1])
			if err != nil {
				return 0, "", &Error{Reason: fmt.Sprintf("at byte %d: bad string %s", i, s[i:j+1])}
			}
			return j + 1, text, nil
		}
	}
	return 0, "", &Error{Reason: fmt.Sprintf("at byte %d: unterminated string", i)}
}

// Format renders f in the text form, so that Parse(Format(f)) gives back
// what Parse produced (Parse never makes and/or lists of fewer than two
// members; Format writes an empty and as all and an empty or as none).
func Format(f *registryv1.Filter) string {
	if f == nil || f.GetNode() == nil {
		return ""
	}
	var b strings.Builder
	format(&b, f)
	return b.String()
}

func format(b *strings.Builder, f *registryv1.Filter) {
	switch n := f.GetNode().(type) {
	case *registryv1.Filter_Condition:
		formatCondition(b, n.Condition)
	case *registryv1.Filter_And, *registryv1.Filter_Or:
		word, list := " and ", f.GetAnd().GetFilters()
		if _, ok := n.(*registryv1.Filter_Or); ok {
			word, list = " or ", f.GetOr().GetFilters()
		}
		if len(list) == 0 {
			b.WriteString(map[string]string{" and ": "all", " or ": "none"}[word])
			return
		}
		b.WriteString("(")
		for i, m := range list {
			if i > 0 {
				b.WriteString(word)
			}
			format(b, m)
		}
		b.WriteString(")")
	case *registryv1.Filter_Not:
		b.WriteString("not ")
		format(b, n.Not)
	}
}

func formatCondition(b *strings.Builder, c *registryv1.Condition) {
	b.WriteString(strconv.Quote(c.GetField()))
	switch c.GetOp() {
	case registryv1.Condition_OP_EXISTS:
		b.WriteString(" exists")
		return
	case registryv1.Condition_OP_IN:
		b.WriteString(" in [")
		for i, v := range c.GetValues() {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(formatValue(v))
		}
		b.WriteString("]")
		return
	}
	sym := map[registryv1.Condition_Op]string{registryv1.Condition_OP_EQ: "=", registryv1.Condition_OP_NE: "!=",
		registryv1.Condition_OP_LT: "<", registryv1.Condition_OP_LTE: "<=", registryv1.Condition_OP_GT: ">", registryv1.Condition_OP_GTE: ">="}[c.GetOp()]
	if sym == "" {
		sym = opName(c.GetOp())
	}
	b.WriteString(" " + sym + " " + formatValue(c.GetValue()))
}

func formatValue(v *registryv1.Value) string {
	switch k := v.GetKind().(type) {
	case *registryv1.Value_StringValue:
		return strconv.Quote(k.StringValue)
	case *registryv1.Value_IntValue:
		return strconv.FormatInt(k.IntValue, 10)
	case *registryv1.Value_FloatValue:
		s := strconv.FormatFloat(k.FloatValue, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEIN") {
			s += ".0"
		}
		return s
	case *registryv1.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	case *registryv1.Value_ListValue:
		parts := make([]string, len(k.ListValue.GetValues()))
		for i, s := range k.ListValue.GetValues() {
			parts[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return "null"
}

// opName is an operator as the text form writes it ("startswith").
func opName(op registryv1.Condition_Op) string {
	return strings.ToLower(strings.TrimPrefix(op.String(), "OP_"))
}
