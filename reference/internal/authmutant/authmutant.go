// Package authmutant holds the deliberate auth defects of the reference
// proxy that the suite's own tests use as mutants: each must be caught by a
// spec of the auth suite (acceptance/authmutants_test.go).
//
// TEST ONLY. prism-proxy reads [Env] (PRISM_AUTH_MUTANT) once at start and,
// when it is set, logs at error level that the proxy is deliberately broken.
// Never set it in a deployment. The package is internal so that nothing
// outside the reference proxy can switch a defect on.
package authmutant

import (
	"fmt"
	"strings"
	"sync/atomic"
)

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
)

// Env is the environment variable prism-proxy reads the defect from.
const Env = "PRISM_AUTH_MUTANT"

// All returns every defect in a stable order.
func All() []Defect {
	return []Defect{AlgNone, SkipAudience, IgnoreExpiry, LeakToken, ReadGrantsWrite}
}

var active atomic.Value // Defect

// Parse returns the defect named s ("" is none).
func Parse(s string) (Defect, error) {
	if s == "" {
		return "", nil
	}
	for _, d := range All() {
		if string(d) == s {
			return d, nil
		}
	}
	names := make([]string, 0, len(All()))
	for _, d := range All() {
		names = append(names, string(d))
	}
	return "", fmt.Errorf("parse %s: %q is not one of %s", Env, s, strings.Join(names, ", "))
}

// Set switches d on for the whole process ("" switches every defect off).
func Set(d Defect) { active.Store(d) }

// Active returns the defect switched on, or "".
func Active() Defect {
	d, _ := active.Load().(Defect)
	return d
}

// Has reports whether d is switched on.
func Has(d Defect) bool { return Active() == d }
