//go:build !prism_mutants

package authmutant

import "log/slog"

// Compiled reports whether this binary holds the defects: it does not (it
// was built without -tags prism_mutants). Hook sites test it first, so that
// the compiler drops their defect branches from this build whatever it
// inlines.
const Compiled = false

// Setup does nothing in the default build: it reads no environment
// variable, and no defect can be switched on.
func Setup() error { return nil }

// Active returns "": the default build has no defects.
func Active() Defect { return "" }

// Warn does nothing in the default build.
func Warn(*slog.Logger) {}
