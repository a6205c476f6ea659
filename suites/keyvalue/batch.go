package keyvalue

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

func describeBatch(sess func() *session) {
	Context("batch", basic, batch, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		entries := func(prefix string, n int) []*keyvaluev1.Entry {
			out := make([]*keyvaluev1.Entry, n)
			for i := range out {
				out[i] = &keyvaluev1.Entry{Key: fmt.Sprintf("%s%04d", prefix, i), Value: []byte(fmt.Sprintf("value-%d", i))}
			}
			return out
		}
		keysOf := func(es []*keyvaluev1.Entry) []string {
			out := make([]string, len(es))
			for i, e := range es {
				out[i] = e.GetKey()
			}
			return out
		}

		It("writes a batch of 1000 entries and reads them back in request order", func() {
			Expect(s.fx.Description.GetLimits().GetMaxBatchSize()).To(BeNumerically(">=", 1000),
				"a plugin declaring keyvalue.batch must accept batches of at least 1000")
			es := entries(s.key("b/"), 1000)
			s.track(keysOf(es)...)
			_, err := s.kv.BatchSet(s.ctx(), &keyvaluev1.BatchSetRequest{Entries: es})
			Expect(err).NotTo(HaveOccurred())
			keys := keysOf(es)
			// Ask in reverse to check that results follow the request order.
			for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
				keys[i], keys[j] = keys[j], keys[i]
			}
			resp, err := s.kv.BatchGet(s.ctx(), &keyvaluev1.BatchGetRequest{Keys: keys})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetResults()).To(HaveLen(1000))
			for i, r := range resp.GetResults() {
				want := es[len(es)-1-i]
				Expect(r.GetKey()).To(Equal(want.GetKey()), "result %d", i)
				Expect(r.GetFound()).To(BeTrue(), "result %d (%s)", i, r.GetKey())
				Expect(r.GetValue()).To(Equal(want.GetValue()), "result %d (%s)", i, r.GetKey())
			}
			for _, e := range []*keyvaluev1.Entry{es[0], es[499], es[999]} {
				Expect(s.MustGet(e.GetKey())).To(Equal(e.GetValue()), "single Get after BatchSet")
			}
		})

		It("reports missing keys as not found, in request order", func() {
			s.MustSet(s.key("here"), []byte("1"))
			resp, err := s.kv.BatchGet(s.ctx(), &keyvaluev1.BatchGetRequest{Keys: []string{s.key("gone"), s.key("here"), s.key("gone2")}})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetResults()).To(HaveLen(3))
			Expect([]bool{resp.GetResults()[0].GetFound(), resp.GetResults()[1].GetFound(), resp.GetResults()[2].GetFound()}).
				To(Equal([]bool{false, true, false}))
			Expect(resp.GetResults()[1].GetValue()).To(Equal([]byte("1")))
		})

		It("deletes a batch and reports per key whether it existed", func() {
			s.MustSet(s.key("d1"), []byte("x"))
			s.MustSet(s.key("d3"), []byte("x"))
			resp, err := s.kv.BatchDelete(s.ctx(), &keyvaluev1.BatchDeleteRequest{Keys: []string{s.key("d1"), s.key("d2"), s.key("d3")}})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetExisted()).To(Equal([]bool{true, false, true}))
			s.ExpectMissing(s.key("d1"))
			s.ExpectMissing(s.key("d3"))
		})

		It("rejects a batch with an invalid entry with InvalidArgument naming it, and writes none of it", func() {
			es := entries(s.key("partial/"), 5)
			es[3].Key = ""
			s.track(keysOf(es)...)
			_, err := s.kv.BatchSet(s.ctx(), &keyvaluev1.BatchSetRequest{Entries: es})
			Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "entries[3]"))
			for _, e := range es[:3] {
				s.ExpectMissing(e.GetKey())
			}
		})

		It("applies a TTL to every entry of a batch", Label("keyvalue.ttl"), func() {
			const life = 400 * time.Millisecond
			es := entries(s.key("ttl/"), 20)
			s.track(keysOf(es)...)
			_, err := s.kv.BatchSet(s.ctx(), &keyvaluev1.BatchSetRequest{Entries: es, Ttl: durationpb.New(life)})
			Expect(err).NotTo(HaveOccurred())
			// The TTL started before BatchSet returned, however slow the call.
			waitPast(time.Now().Add(life + expiryMargin))
			resp, err := s.kv.BatchGet(s.ctx(), &keyvaluev1.BatchGetRequest{Keys: keysOf(es)})
			Expect(err).NotTo(HaveOccurred())
			for _, r := range resp.GetResults() {
				Expect(r.GetFound()).To(BeFalse(), "%s outlived its TTL", r.GetKey())
			}
		})
	})
}
