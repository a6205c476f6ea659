package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-suite/prism/proto/capability"
)

// TestProtocolDocumentIsCurrent fails when PROTOCOL.md's capability section
// differs from what proto/capability lists: run `go run ./proto/capability/gen`
// (or `go tool task proto`) and commit.
func TestProtocolDocumentIsCurrent(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "PROTOCOL.md"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := splice(doc, section(capability.All()))
	if err != nil {
		t.Fatal(err)
	}
	if string(doc) != string(want) {
		t.Errorf("proto/PROTOCOL.md's capability section is stale; run `go run ./proto/capability/gen` and commit")
	}
	for _, c := range capability.All() {
		if !strings.Contains(string(doc), "| `"+string(c.Name)+"` |") {
			t.Errorf("PROTOCOL.md does not list capability %s", c.Name)
		}
	}
}

func TestSpliceNeedsBothMarkersOnce(t *testing.T) {
	for _, doc := range []string{
		"no markers",
		begin + "\n",
		end + "\n" + begin + "\n",
		begin + "\n" + begin + "\n" + end + "\n",
	} {
		if _, err := splice([]byte(doc), "x\n"); err == nil {
			t.Errorf("splice(%q) = nil error, want one", doc)
		}
	}
	got, err := splice([]byte("a\n"+begin+"\nold\n"+end+"\nb\n"), "new\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "a\n" + begin + "\nnew\n" + end + "\nb\n"; string(got) != want {
		t.Errorf("splice = %q, want %q", got, want)
	}
}

func TestCellEscapesPipes(t *testing.T) {
	if got := cell("a|b\nc"); got != `a\|b c` {
		t.Errorf("cell = %q", got)
	}
}
