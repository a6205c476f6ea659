package capability_test

import (
	"testing"

	"github.com/prism-suite/prism/proto/capability"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// Declared is the set of names a Describe answer sends, unknown ones too
// (the lifecycle suite judges those); no answer declares nothing.
func TestDeclared(t *testing.T) {
	d := &lifecyclev1.DescribeResponse{Capabilities: []*lifecyclev1.Capability{{Name: "keyvalue.basic"}, {Name: "keyvalue.nope"}}}
	s := capability.Declared(d)
	if len(s) != 2 || !s.Has(capability.KeyValueBasic) || !s.Has("keyvalue.nope") || s.Has(capability.KeyValueTTL) {
		t.Fatalf("Declared = %v, want keyvalue.basic and keyvalue.nope", s.Sorted())
	}
	if s := capability.Declared(nil); len(s) != 0 {
		t.Fatalf("Declared(nil) = %v, want empty", s.Sorted())
	}
}
