package handshake

import (
	"strconv"
	"unicode/utf8"
)

// TruncateLimit is how many bytes of a text it did not write (a plugin's
// handshake line, stderr, Describe answer or error; a client's metadata) a
// host puts in an error, a log line, /status or a report field.
const TruncateLimit = 256

// Truncate returns s when it has at most n bytes; else its first n bytes,
// cut back to a rune boundary, followed by "…[N bytes]" with the length of
// the whole text, so a 10 MB field costs n bytes wherever it is quoted and
// the reader still learns its size.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[" + strconv.Itoa(len(s)) + " bytes]"
}

// TruncateTail is Truncate keeping the last n bytes, for texts whose end
// says most (a plugin's stderr): "[N bytes]…" then the tail.
func TruncateTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := len(s) - max(n, 0)
	for cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut++
	}
	return "[" + strconv.Itoa(len(s)) + " bytes]…" + s[cut:]
}
