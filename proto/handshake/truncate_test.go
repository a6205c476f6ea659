package handshake_test

import (
	"strings"
	"testing"

	"github.com/prism-suite/prism/proto/handshake"
)

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		head string
		tail string
	}{
		{"short", 8, "short", "short"},
		{"exactly8", 8, "exactly8", "exactly8"},
		{"123456789", 8, "12345678…[9 bytes]", "[9 bytes]…23456789"},
		{"ééééé", 3, "é…[10 bytes]", "[10 bytes]…é"}, // never half a rune
		{"abc", 0, "…[3 bytes]", "[3 bytes]…"},
	} {
		if got := handshake.Truncate(tc.in, tc.n); got != tc.head {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.head)
		}
		if got := handshake.TruncateTail(tc.in, tc.n); got != tc.tail {
			t.Errorf("TruncateTail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.tail)
		}
	}
}

// TestParseQuotesBoundedText: a handshake line with a 10 MB field makes an
// error of a few hundred bytes that still gives the field's length.
func TestParseQuotesBoundedText(t *testing.T) {
	huge := strings.Repeat("9x", 5<<20)
	for name, line := range map[string]string{
		"version": handshake.Prefix + "|" + huge + "|unix|/tmp/s",
		"network": handshake.Prefix + "|1|" + huge + "|/tmp/s",
		"prefix":  huge,
		"address": handshake.Prefix + "|1|unix|" + huge,
	} {
		_, err := handshake.Parse(line)
		if err == nil {
			t.Fatalf("%s: Parse accepted a 10 MB field", name)
		}
		if n := len(err.Error()); n > 2*handshake.TruncateLimit+200 {
			t.Errorf("%s: error is %d bytes, want it short", name, n)
		}
		if !strings.Contains(err.Error(), "10485") {
			t.Errorf("%s: error %q does not give the field's length", name, err.Error()[:min(300, len(err.Error()))])
		}
	}
}
