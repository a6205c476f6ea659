// Package scaffold writes a new Prism plugin: `prism-accept new-plugin --lang
// go|python NAME`. The plugin builds (Go) or runs (Python), starts and is
// certified on lifecycle as written, declares no data capability yet, and
// marks with TODO where the author's backend calls go; its README walks from
// the scaffold to a first certified capability.
//
// The Go plugin uses the Go plugin SDK (github.com/prism-suite/prism/backends/sdk):
// the SDK owns the protocol, the author writes a driver. The Python plugin
// carries prismkit, the same machinery in Python (a copy of
// backends/python-memstore/prismkit), and the code protoc generated from
// proto/ (a copy of backends/python-memstore/gen); it needs only Debian's
// python3-grpcio and python3-protobuf.
package scaffold

import (
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	pythonmemstore "github.com/prism-suite/prism/backends/python-memstore"
)

//go:embed all:templates
var templates embed.FS

// Langs are the languages new-plugin writes.
var Langs = []string{"go", "python"}

// Options say what to write.
type Options struct {
	// Lang is "go" or "python".
	Lang string
	// Name is the plugin's name: 1 to 63 of [a-z0-9-], starting with a letter.
	Name string
	// Dir is the folder to write, which must not exist or be empty.
	Dir string
	// Module is the Go module path of a Go plugin (default: Name).
	Module string
	// PrismDir, when set, is a checkout of github.com/prism-suite/prism that a
	// Go plugin's go.mod replaces the module with.
	PrismDir string
}

// UsageError is a bad option (language, name, --prism-dir, a folder in use).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }

func usageErr(format string, args ...any) error { return &UsageError{fmt.Errorf(format, args...)} }

var validName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Write writes the plugin described by o and returns the files written, relative to o.Dir.
func Write(o Options) ([]string, error) {
	if o.Lang != "go" && o.Lang != "python" {
		return nil, usageErr("new-plugin: --lang %q is not one of %s", o.Lang, strings.Join(Langs, ", "))
	}
	if !validName.MatchString(o.Name) {
		return nil, usageErr("new-plugin: name %q must be 1 to 63 of a-z, 0-9 and '-', starting with a letter", o.Name)
	}
	if o.Dir == "" {
		o.Dir = o.Name
	}
	if o.Module == "" {
		o.Module = o.Name
	}
	if o.PrismDir != "" {
		abs, err := filepath.Abs(o.PrismDir)
		if err != nil {
			return nil, usageErr("new-plugin: --prism-dir: %w", err)
		}
		if _, err := os.Stat(filepath.Join(abs, "backends", "sdk")); err != nil {
			return nil, usageErr("new-plugin: --prism-dir %s is not a checkout of github.com/prism-suite/prism (no backends/sdk)", abs)
		}
		o.PrismDir = abs
	}
	if entries, err := os.ReadDir(o.Dir); err == nil && len(entries) > 0 {
		return nil, usageErr("new-plugin: %s exists and is not empty", o.Dir)
	}
	data := map[string]string{
		"Name":     o.Name,
		"Module":   o.Module,
		"PrismDir": o.PrismDir,
		"Class":    className(o.Name),
	}
	root := "templates/" + o.Lang
	var written []string
	err := fs.WalkDir(templates, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, "__pycache__") {
			return err
		}
		rel := strings.TrimPrefix(p, root+"/")
		b, err := templates.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(rel, ".tmpl") {
			rel = strings.TrimSuffix(rel, ".tmpl")
			t, err := template.New(rel).Delims("[[", "]]").Parse(string(b))
			if err != nil {
				return fmt.Errorf("template %s: %w", p, err)
			}
			var sb strings.Builder
			if err := t.Execute(&sb, data); err != nil {
				return fmt.Errorf("template %s: %w", p, err)
			}
			b = []byte(sb.String())
		}
		dst := filepath.Join(o.Dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if path.Base(rel) == "plugin.py" {
			mode = 0o755
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			return err
		}
		written = append(written, rel)
		return nil
	})
	if err == nil && o.Lang == "python" {
		// The protocol layer and generated code of backends/python-memstore,
		// as they are there.
		err = fs.WalkDir(pythonmemstore.Kit, ".", func(p string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				return err
			case d.IsDir() && d.Name() == "__pycache__":
				return fs.SkipDir
			case d.IsDir():
				return nil
			}
			b, err := pythonmemstore.Kit.ReadFile(p)
			if err != nil {
				return err
			}
			dst := filepath.Join(o.Dir, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				return err
			}
			written = append(written, p)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("new-plugin: write %s: %w", o.Dir, err)
	}
	if o.Lang == "go" && o.PrismDir != "" {
		// The checkout's go.sum: its modules are those the plugin needs, so
		// it builds without a checksum lookup (go build -mod=mod).
		if b, err := os.ReadFile(filepath.Join(o.PrismDir, "go.sum")); err == nil {
			if err := os.WriteFile(filepath.Join(o.Dir, "go.sum"), b, 0o644); err != nil {
				return nil, fmt.Errorf("new-plugin: write %s: %w", o.Dir, err)
			}
			written = append(written, "go.sum")
		}
	}
	return written, nil
}

func className(name string) string {
	var b strings.Builder
	for _, part := range strings.Split(name, "-") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String() + "Driver"
}

const usage = `prism-accept new-plugin writes a new Prism plugin that builds, starts and is
certified on lifecycle as written, with TODOs where your backend calls go and
a README from the scaffold to a first certified capability.

Usage:
  prism-accept new-plugin --lang go|python [--dir DIR] [--module PATH] [--prism-dir CHECKOUT] NAME

Examples:
  prism-accept new-plugin --lang python my-plugin
  prism-accept new-plugin --lang go --module example.com/my-plugin --prism-dir ~/src/prism my-plugin

Flags:
`

// Main is `prism-accept new-plugin`: it returns the exit code (0, 1 when
// writing failed, 64 for bad usage).
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("new-plugin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var o Options
	fs.StringVar(&o.Lang, "lang", "", "the plugin's language: go or python (required)")
	fs.StringVar(&o.Dir, "dir", "", "folder to write (default: ./NAME); must not exist or be empty")
	fs.StringVar(&o.Module, "module", "", "Go module path of a Go plugin (default: NAME)")
	fs.StringVar(&o.PrismDir, "prism-dir", "", "a checkout of github.com/prism-suite/prism for a Go plugin's go.mod replace directive")
	// Flags may follow the name too.
	var rest []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 64
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(rest) != 1 || o.Lang == "" {
		fs.Usage()
		fmt.Fprintln(stderr, "\nnew-plugin: want --lang and exactly one NAME")
		return 64
	}
	o.Name = rest[0]
	if o.Dir == "" {
		o.Dir = o.Name
	}
	files, err := Write(o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if ue := (*UsageError)(nil); errors.As(err, &ue) {
			return 64
		}
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s plugin %q in %s (%d files); next: %s/README.md\n", o.Lang, o.Name, o.Dir, len(files), o.Dir)
	return 0
}
