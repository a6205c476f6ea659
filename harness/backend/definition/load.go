package definition

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is a problem with a definition file: File and Line locate it (Line
// is 0 when unknown), Field names the field by its YAML path
// ("container.image").
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

// Error implements error: "FILE:LINE: FIELD: MSG".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads, strictly decodes and validates the definition file at path.
func Load(path string) (*Definition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read backend file: %w", err)
	}
	return Parse(path, data)
}

// Parse strictly decodes and validates a definition; file names it in
// errors and becomes [Definition.File] (relative paths in it are relative to
// file's folder).
func Parse(file string, data []byte) (*Definition, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var d Definition
	if err := dec.Decode(&d); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Msg: "the file is empty"}
		}
		e := yamlError(file, err)
		if de, ok := e.(*Error); ok && de.Field != "" {
			if path := pathOf(&root, de.Line, de.Field, ""); path != "" {
				de.Field = path
			}
		}
		return nil, e
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: file, Line: extra.Line, Msg: "more than one YAML document"}
	}
	d.File = file
	if err := d.validate(&root); err != nil {
		return nil, err
	}
	return &d, nil
}

// yamlLine matches yaml.v3's "line N: msg".
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns a yaml.v3 error into *Error (the first problem when there
// are several, with the count).
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	e := &Error{File: file, Msg: strings.TrimPrefix(msgs[0], "yaml: ")}
	if m := yamlLine.FindStringSubmatch(msgs[0]); m != nil {
		fmt.Sscan(m[1], &e.Line)
		e.Msg = m[2]
	}
	if f := regexp.MustCompile(`field (\S+) not found in type definition\.(\w+)`).FindStringSubmatch(e.Msg); f != nil {
		e.Msg = fmt.Sprintf("unknown field %q (in %s; see harness/backend/definition or docs/backend-file.md)", f[1], f[2])
		e.Field = f[1]
	}
	if len(msgs) > 1 {
		e.Msg += fmt.Sprintf(" (and %d more problems)", len(msgs)-1)
	}
	return e
}

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration such as 30s", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Dir returns the folder relative paths in d are relative to.
func (d *Definition) Dir() string {
	if d.File == "" {
		return "."
	}
	return filepath.Dir(d.File)
}

// Bool returns *b, or def when b is nil.
func Bool(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// pathOf returns the dotted path of the mapping key named key on line, or "".
func pathOf(n *yaml.Node, line int, key, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p := pathOf(c, line, key, prefix); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Line == line && k.Value == key {
				return prefix + k.Value
			}
			if p := pathOf(n.Content[i+1], line, key, prefix+k.Value+"."); p != "" {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if p := pathOf(c, line, key, fmt.Sprintf("%s%d.", prefix, i)); p != "" {
				return p
			}
		}
	}
	return ""
}
