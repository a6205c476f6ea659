//go:build prism_mutants

package authmutant

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
)

// Env is the environment variable [Setup] reads the defect from. It exists
// only in a prism_mutants build.
const Env = "PRISM_AUTH_MUTANT"

// All returns every defect in a stable order.
func All() []Defect {
	return []Defect{AlgNone, SkipAudience, IgnoreExpiry, LeakToken, ReadGrantsWrite, AudSubstring, IssPrefix,
		SkewTwice, IgnoreNotBefore, CachePastExpiry, StreamOutlivesToken, NamespacePrefix, ScopeUnanchored, KidAnyKey,
		LenientClaims}
}

// Compiled reports whether this binary holds the defects: it does (it was
// built with -tags prism_mutants).
const Compiled = true

var active atomic.Value // Defect

// Parse returns the defect named s ("" is none).
func Parse(s string) (Defect, error) {
	if s == "" {
		return "", nil
	}
	names := make([]string, 0, len(All()))
	for _, d := range All() {
		if string(d) == s {
			return d, nil
		}
		names = append(names, string(d))
	}
	return "", fmt.Errorf("parse %s: %q is not one of %s", Env, s, strings.Join(names, ", "))
}

// Setup switches on the defect [Env] names, for the whole process.
func Setup() error {
	d, err := Parse(os.Getenv(Env))
	if err != nil {
		return err
	}
	Set(d)
	return nil
}

// Set switches d on for the whole process ("" switches every defect off).
func Set(d Defect) { active.Store(d) }

// Active returns the defect switched on, or "".
func Active() Defect {
	d, _ := active.Load().(Defect)
	return d
}

// Warn logs at error level that the process is deliberately broken, when a
// defect is switched on.
func Warn(log *slog.Logger) {
	if d := Active(); d != "" {
		log.Error("this proxy is deliberately broken for testing: "+Env+" is set; never use it in a deployment",
			"defect", string(d))
	}
}
