// Package authmutant holds the deliberate auth defects of the reference
// proxy that the suite's own tests use as mutants: each must be caught by a
// spec of the auth suite (acceptance/authmutants_test.go).
//
// TEST ONLY, and only in a test build: the defects exist only in a binary
// built with -tags prism_mutants. There prism-proxy calls [Setup], which
// reads PRISM_AUTH_MUTANT once at start, and [Warn] logs at error level that
// the proxy is deliberately broken. In the default build (every shipped
// binary) [Setup] reads no environment variable, [Active] returns "" and,
// since every hook site tests the constant [Compiled] first, every defect is
// compiled out: no setting turns a check off. The
// package is internal so that nothing outside the reference proxy can switch
// a defect on.
package authmutant

// Defect is one deliberate auth defect.
type Defect string

// The defects.
const (
	// AlgNone accepts unsigned tokens (alg "none" in any letter case).
	AlgNone Defect = "alg-none"
	// SkipAudience does not check the aud claim.
	SkipAudience Defect = "skip-audience"
	// IgnoreExpiry accepts expired tokens.
	IgnoreExpiry Defect = "ignore-expiry"
	// LeakToken forwards the authorization metadata to the plugin.
	LeakToken Defect = "leak-token"
	// ReadGrantsWrite lets a read grant authorise writes.
	ReadGrantsWrite Defect = "read-grants-write"
	// AudSubstring accepts an aud value that contains the audience
	// ("prism-proxy-2", "other prism-proxy").
	AudSubstring Defect = "aud-substring"
	// IssPrefix accepts an iss that starts with the issuer, in any letter
	// case (a trailing slash, a path after it, "HTTP://").
	IssPrefix Defect = "iss-prefix"
	// SkewTwice applies the clock skew twice (the library's leeway and the
	// clock moved back by it), so exp, nbf and iat get twice the leeway.
	SkewTwice Defect = "skew-twice"
	// IgnoreNotBefore does not check nbf.
	IgnoreNotBefore Defect = "ignore-nbf"
	// CachePastExpiry keeps answering a cached token as valid after its exp.
	CachePastExpiry Defect = "cache-past-expiry"
	// StreamOutlivesToken lets an open stream run on after its token
	// expired.
	StreamOutlivesToken Defect = "stream-outlives-token"
	// NamespacePrefix lets a grant on a namespace cover every namespace whose
	// name starts with it ("team" covers "team-a").
	NamespacePrefix Defect = "namespace-prefix"
	// ScopeUnanchored matches the grant pattern anywhere in a claim value
	// ("prism:ns:readwrite" grants read, "xprism:ns:read" too).
	ScopeUnanchored Defect = "scope-unanchored"
	// KidAnyKey tries every issuer key that fits the alg when the kid names
	// none.
	KidAnyKey Defect = "kid-any-key"
	// LenientClaims skips the rules jwx leaves to its caller: NumericDates
	// as JSON numbers, sub required, aud a string or an array of strings,
	// and max_token_lifetime.
	LenientClaims Defect = "lenient-claims"
)

// Has reports whether d is switched on (never, in the default build).
func Has(d Defect) bool { return Compiled && Active() == d }
