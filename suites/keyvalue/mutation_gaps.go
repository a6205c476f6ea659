package keyvalue

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// describeMutationGaps holds specs the mutation run (task mutation,
// docs/mutation-survivors.md) found missing: each kills a mutant of a
// reference plugin or the SDK that passed every other spec.
func describeMutationGaps(sess func() *session) {
	Context("ttl", basic, ttl, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		// The SDK's minimum TTL at its edge: "ttl < time.Millisecond" mutated
		// to "<=" refused 1 ms and passed the rest of the suite.
		It("accepts a TTL of exactly one millisecond, the shortest there is, and expires the key after it", func() {
			k := s.key("one-millisecond")
			s.track(k)
			_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: k, Value: []byte("v"), Ttl: durationpb.New(time.Millisecond)})
			Expect(err).NotTo(HaveOccurred(), "Set with a TTL of 1ms")
			done := time.Now()
			_, err = s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: k, Value: []byte("v"), Ttl: durationpb.New(time.Millisecond - time.Microsecond)})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "ttl"), "Set with a TTL of 999µs")
			waitPast(done.Add(time.Millisecond + expiryMargin))
			s.ExpectMissing(k)
		})
	})

	Context("scan", basic, scan, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		// The SDK's prefix limit at its edge: "len(prefix) > MaxKeyBytes"
		// mutated to ">=" refused a prefix as long as the longest key and
		// passed the rest of the suite.
		It("scans with a prefix of exactly max_key_bytes, finding the key that long, and rejects a longer prefix naming the prefix", func() {
			limit := int(s.fx.Description.GetLimits().GetMaxKeyBytes())
			Expect(limit).To(BeNumerically(">", len(s.prefix)), "Describe must declare limits.max_key_bytes")
			atLimit := s.prefix + strings.Repeat("p", limit-len(s.prefix))
			s.MustSet(atLimit, []byte("longest"))
			resp, err := s.kv.Scan(s.ctx(), &keyvaluev1.ScanRequest{Prefix: atLimit, PageSize: 10, IncludeValues: true})
			Expect(err).NotTo(HaveOccurred(), "Scan with a prefix of %d bytes, the declared max_key_bytes", limit)
			Expect(resp.GetEntries()).To(HaveLen(1), "entries for a prefix that is a whole key")
			Expect(resp.GetEntries()[0].GetKey()).To(Equal(atLimit))
			Expect(resp.GetEntries()[0].GetValue()).To(Equal([]byte("longest")))
			_, err = s.kv.Scan(s.ctx(), &keyvaluev1.ScanRequest{Prefix: atLimit + "p", PageSize: 10})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "prefix"), "Scan with a prefix of %d bytes", limit+1)
		})

		// The SDK's page size check at its edges: "size < 0" mutated to
		// "<= 0" refused the default page size (0, unset), "size > max"
		// mutated to ">=" refused a page of exactly max_page_size; both
		// passed the rest of the suite.
		It("takes an unset page_size (a default page) and one of exactly max_page_size, and rejects a larger one naming page_size", func() {
			limit := s.fx.Description.GetLimits().GetMaxPageSize()
			Expect(limit).To(BeNumerically(">", 0), "Describe must declare limits.max_page_size")
			k := s.key("paged/one")
			s.MustSet(k, []byte("v"))
			for _, size := range []int32{0, int32(limit)} {
				resp, err := s.kv.Scan(s.ctx(), &keyvaluev1.ScanRequest{Prefix: s.key("paged/"), PageSize: size})
				Expect(err).NotTo(HaveOccurred(), "Scan with page_size %d (max_page_size %d)", size, limit)
				Expect(resp.GetEntries()).To(HaveLen(1), "Scan with page_size %d", size)
				Expect(resp.GetEntries()[0].GetKey()).To(Equal(k))
			}
			_, err := s.kv.Scan(s.ctx(), &keyvaluev1.ScanRequest{Prefix: s.key("paged/"), PageSize: int32(limit) + 1})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "page_size"), "Scan with page_size %d", limit+1)
		})
	})

	Context("batch", basic, batch, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		// The SDK's key check of BatchGet and BatchDelete: "err != nil"
		// mutated to "== nil" in validateKeys let every key after a valid
		// first one through unchecked and passed the rest of the suite.
		It("rejects an empty or over-long key after a valid one in BatchGet and BatchDelete with InvalidArgument naming it", func() {
			limit := int(s.fx.Description.GetLimits().GetMaxKeyBytes())
			Expect(limit).To(BeNumerically(">", 0), "Describe must declare limits.max_key_bytes")
			good := s.key("good")
			s.MustSet(good, []byte("kept"))
			for _, bad := range []string{"", s.prefix + strings.Repeat("k", limit+1-len(s.prefix))} {
				keys := []string{good, bad}
				_, err := s.kv.BatchGet(s.ctx(), &keyvaluev1.BatchGetRequest{Keys: keys})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "keys[1]"), "BatchGet with a key of %d bytes second", len(bad))
				_, err = s.kv.BatchDelete(s.ctx(), &keyvaluev1.BatchDeleteRequest{Keys: keys})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "keys[1]"), "BatchDelete with a key of %d bytes second", len(bad))
			}
			Expect(s.MustGet(good)).To(Equal([]byte("kept")), "a refused BatchDelete must delete nothing")
		})
	})
}
