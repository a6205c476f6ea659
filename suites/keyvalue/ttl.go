package keyvalue

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// expiryMargin is how long after a TTL's end the suite first checks that the
// key is gone. A key must read as missing from then on, whether or not the
// plugin has reclaimed it yet.
const expiryMargin = 50 * time.Millisecond

// waitPast waits until t has passed (the spec needs wall-clock time to pass
// for a TTL; this is not a readiness wait).
func waitPast(t time.Time) { time.Sleep(time.Until(t)) }

func describeTTL(sess func() *session) {
	Context("ttl", basic, ttl, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		setTTL := func(k string, v []byte, d time.Duration) time.Time {
			GinkgoHelper()
			s.track(k)
			start := time.Now()
			_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: k, Value: v, Ttl: durationpb.New(d)})
			Expect(err).NotTo(HaveOccurred(), "Set(%q) with TTL %v", k, d)
			return start
		}

		It("expires a key after its TTL and reads it as missing at once, before any sweep", func() {
			const life = 400 * time.Millisecond
			k := s.key("short-lived")
			start := setTTL(k, []byte("soon gone"), life)
			Expect(s.MustGet(k)).To(Equal([]byte("soon gone")), "the key must be readable before its TTL ends")
			waitPast(start.Add(life + expiryMargin))
			s.ExpectMissing(k)
			_, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "GetTTL of an expired key")
		})

		It("reports the remaining TTL of a key that expires", func() {
			k := s.key("ten-seconds")
			setTTL(k, []byte("v"), 10*time.Second)
			resp, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetHasExpiry()).To(BeTrue())
			Expect(resp.GetTtl().AsDuration()).To(And(BeNumerically(">", 8*time.Second), BeNumerically("<=", 10*time.Second)))
		})

		It("tells a key without expiry from a key that does not exist", func() {
			k := s.key("forever")
			s.MustSet(k, []byte("v"))
			resp, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetHasExpiry()).To(BeFalse(), "a key set without TTL has no expiry")
			_, err = s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: s.key("nobody")})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "GetTTL of a missing key")
		})

		It("sets a TTL on an existing key with Expire", func() {
			const life = 400 * time.Millisecond
			k := s.key("expire-me")
			s.MustSet(k, []byte("v"))
			start := time.Now()
			_, err := s.kv.Expire(s.ctx(), &keyvaluev1.ExpireRequest{Key: k, Ttl: durationpb.New(life)})
			Expect(err).NotTo(HaveOccurred())
			resp, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetHasExpiry()).To(BeTrue())
			Expect(resp.GetTtl().AsDuration()).To(BeNumerically("<=", life))
			waitPast(start.Add(life + expiryMargin))
			s.ExpectMissing(k)
		})

		It("returns NotFound from Expire and Persist on a missing key", func() {
			_, err := s.kv.Expire(s.ctx(), &keyvaluev1.ExpireRequest{Key: s.key("ghost"), Ttl: durationpb.New(time.Second)})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "Expire")
			_, err = s.kv.Persist(s.ctx(), &keyvaluev1.PersistRequest{Key: s.key("ghost")})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "Persist")
			s.ExpectMissing(s.key("ghost"))
		})

		It("removes a TTL with Persist so the key outlives it", func() {
			const life = 400 * time.Millisecond
			k := s.key("rescued")
			start := setTTL(k, []byte("kept"), life)
			resp, err := s.kv.Persist(s.ctx(), &keyvaluev1.PersistRequest{Key: k})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetHadExpiry()).To(BeTrue())
			waitPast(start.Add(life + expiryMargin))
			Expect(s.MustGet(k)).To(Equal([]byte("kept")))
			again, err := s.kv.Persist(s.ctx(), &keyvaluev1.PersistRequest{Key: k})
			Expect(err).NotTo(HaveOccurred())
			Expect(again.GetHadExpiry()).To(BeFalse(), "a second Persist finds no TTL")
		})

		It("clears the TTL when a key is overwritten without one", func() {
			const life = 400 * time.Millisecond
			k := s.key("overwritten")
			start := setTTL(k, []byte("first"), life)
			s.MustSet(k, []byte("second"))
			resp, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetHasExpiry()).To(BeFalse(), "Set without TTL must clear the TTL")
			waitPast(start.Add(life + expiryMargin))
			Expect(s.MustGet(k)).To(Equal([]byte("second")))
		})

		It("rejects a negative or sub-millisecond TTL with InvalidArgument naming the ttl", func() {
			for _, d := range []time.Duration{-time.Second, time.Microsecond} {
				_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: s.key("bad-ttl"), Value: []byte("v"), Ttl: durationpb.New(d)})
				Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "ttl"), "TTL %v", d)
			}
			s.ExpectMissing(s.key("bad-ttl"))
		})
	})
}
