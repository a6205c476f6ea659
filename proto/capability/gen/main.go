// Command gen writes the capability list of proto/capability into
// proto/PROTOCOL.md, between the markers
//
//	<!-- BEGIN GENERATED CAPABILITIES (go run ./proto/capability/gen) -->
//	<!-- END GENERATED CAPABILITIES -->
//
// so the protocol document cannot drift from the list the suites gate on.
// Run it from the module root (`go tool task proto` does); a test fails when
// the committed document is stale.
package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/prism-suite/prism/proto/capability"
)

// The markers the generated section sits between.
const (
	begin = "<!-- BEGIN GENERATED CAPABILITIES (go run ./proto/capability/gen) -->"
	end   = "<!-- END GENERATED CAPABILITIES -->"
)

// path is PROTOCOL.md relative to the module root.
const path = "proto/PROTOCOL.md"

func main() {
	if err := run(path); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read protocol document: %w", err)
	}
	out, err := splice(doc, section(capability.All()))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if bytes.Equal(out, doc) {
		return nil
	}
	return os.WriteFile(path, out, 0o644)
}

// splice replaces what lies between the markers in doc with body.
func splice(doc []byte, body string) ([]byte, error) {
	s := string(doc)
	i := strings.Index(s, begin)
	j := strings.Index(s, end)
	if i < 0 || j < 0 || j < i || strings.Count(s, begin) != 1 || strings.Count(s, end) != 1 {
		return nil, fmt.Errorf("want the markers %q and %q once each, in that order", begin, end)
	}
	return []byte(s[:i+len(begin)] + "\n" + body + s[j:]), nil
}

// section renders the capabilities as a Markdown table, in the list's order.
func section(all []capability.Info) string {
	var b strings.Builder
	b.WriteString("| capability | interface | declared by | certified by | promise |\n")
	b.WriteString("|---|---|---|---|---|\n")
	proxy := capability.NewSet(capability.ProxyCapabilities...)
	for _, c := range all {
		by := "the plugin"
		switch {
		case c.Required:
			by = "nobody: required of every plugin"
		case c.Name.Family() == "registry":
			by = "the proxy (registry pattern)"
		case proxy.Has(c.Name):
			by = "the proxy"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | `suites/%s` | %s |\n", c.Name, c.InterfaceVersion, by, c.Suite, cell(c.Promise))
	}
	return b.String()
}

// cell escapes text for a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
