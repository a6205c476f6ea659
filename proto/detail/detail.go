// Package detail names the standard details every Prism plugin reports in
// its lifecycle HealthCheck response (prism.lifecycle.v1.HealthCheckResponse
// details), as proto/PROTOCOL.md §5 defines them. Hosts and suites observe
// plugins through them, whatever language a plugin is written in.
//
// Each value is a non-negative integer in decimal ASCII. The prefix "prism."
// is reserved for these; a plugin's own details carry a prefix of its own.
package detail

import (
	"fmt"
	"strconv"
)

const (
	// InflightCalls is the number of data calls (any prism.* service but
	// Lifecycle) the plugin admitted and whose handling has not ended,
	// unary calls and open streams alike. A call counts until the plugin has
	// stopped all work for it, not until its client gave up.
	InflightCalls = "prism.inflight_calls"
	// OpenStreams is the number of streaming data calls open (PubSub
	// Subscribe), counted like InflightCalls; never more than it.
	OpenStreams = "prism.open_streams"
	// AuthorizationHeadersSeen is the number of data calls since the process
	// started whose metadata carried an "authorization" key, counted when
	// they arrived (refused calls too). A host must never forward a client's
	// token to a plugin: this is the witness that it does not.
	AuthorizationHeadersSeen = "prism.authorization_headers_seen"
)

// Standard lists the standard details, in the order PROTOCOL.md gives them.
func Standard() []string {
	return []string{InflightCalls, OpenStreams, AuthorizationHeadersSeen}
}

// Get reads the standard detail key from a HealthCheck's details. ok is false
// when the plugin does not report it; err says why a reported value is not a
// non-negative decimal integer.
func Get(details map[string]string, key string) (n int64, ok bool, err error) {
	v, ok := details[key]
	if !ok {
		return 0, false, nil
	}
	n, err = strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != v {
		return 0, true, fmt.Errorf("health detail %s = %q: want a non-negative decimal integer", key, v)
	}
	return n, true, nil
}
