package pubsub

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// describeMutationGaps holds specs the mutation run (task mutation,
// docs/mutation-survivors.md) found missing: each kills a mutant of a
// reference plugin or the SDK that passed every other spec.
func describeMutationGaps(sess func() *session) {
	Context("queue", basic, queue, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		// The SDK's name check at its edges: "len(name) > MaxNameBytes"
		// mutated to ">=" refused a 128-byte name, and "i >= 0" mutated to
		// "i > 0" let an invalid first byte through, and each "c >= 'a'"-like
		// bound mutated to ">" refused a letter or digit at the edge of its
		// range ('a', 'z', 'A', 'Z', '0', '9'); all passed the rest of the suite.
		It("accepts a queue group name of exactly 128 bytes and one of every edge character, and rejects one whose first byte is invalid, naming the queue group", func() {
			for _, good := range []string{strings.Repeat("g", 128), "azAZ09-_."} {
				_, err := s.subscribe(&pubsubv1.Subscription{Topic: s.topic("q"), QueueGroup: good})
				Expect(err).NotTo(HaveOccurred(), "queue group name %q (%d bytes)", good, len(good))
			}
			for _, bad := range []string{"*star", " space", ">gt"} {
				_, err := s.subscribe(&pubsubv1.Subscription{Topic: s.topic("q"), QueueGroup: bad})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "queue_group"), "queue group %q", bad)
			}
		})
	})
}
