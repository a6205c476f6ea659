//go:build !prism_mutants

package registry

import (
	"errors"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// setupMutant refuses a mutant named by [WithMutant]: the default build has
// none. It reads no environment variable.
func (c *Coordinator) setupMutant(string) error {
	if c.mutantName != "" {
		return errors.New("set up registry mutant: this binary has no registry mutants (they exist only with -tags prism_mutants)")
	}
	return nil
}

// has reports false: the default build has no mutants. It is a constant, so
// the compiler drops every branch that tests for one.
func (c *Coordinator) has(mutantID) bool { return false }

// mutateFilter returns f unchanged: the default build has no mutants.
func (c *Coordinator) mutateFilter(f *registryv1.Filter) *registryv1.Filter { return f }

// mutateMetadata returns md unchanged: the default build has no mutants.
func (c *Coordinator) mutateMetadata(md map[string]*registryv1.Value) map[string]*registryv1.Value {
	return md
}
