//go:build !prism_mutants

package builtins

// mutants is empty: only a prism_mutants build links the suite's mutants.
func mutants() []Driver { return nil }
