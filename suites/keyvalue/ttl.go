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

// expiryMargin is how long after a TTL's end the suite first checks that the
// key is gone. A key must read as missing from then on, whether or not the
// plugin has reclaimed it yet.
const expiryMargin = 50 * time.Millisecond

// waitPast waits until t has passed (the spec needs wall-clock time to pass
// for a TTL; this is not a readiness wait).
func waitPast(t time.Time) { time.Sleep(time.Until(t)) }

// ttlWindow is a TTL a spec set and the times around the call that set it:
// the plugin started the TTL somewhere between sent and done.
type ttlWindow struct {
	life       time.Duration
	sent, done time.Time
}

// inTime reports whether a call that returned at t certainly ran before the
// TTL ended, so the key must still have been there. On a stalled machine a
// call can return later; what it saw then proves nothing either way.
func (w ttlWindow) inTime(t time.Time) bool { return t.Before(w.sent.Add(w.life)) }

// goneAt returns when the key must read as missing: the TTL ended by
// done+life, whatever the latency of the call that set it.
func (w ttlWindow) goneAt() time.Time { return w.done.Add(w.life + expiryMargin) }

// ttlTries is how many times withinTTL runs a spec body whose calls keep
// landing outside the TTL, doubling the TTL each time.
const ttlTries = 3

// lifeFor returns a TTL of at least base that leaves room for calls calls
// inside it at the latency measured now: the slowest of three Exists round
// trips, counted four times over per call.
func (s *session) lifeFor(base time.Duration, calls int) time.Duration {
	GinkgoHelper()
	var slowest time.Duration
	for range 3 {
		t := time.Now()
		_, err := s.kv.Exists(s.ctx(), &keyvaluev1.ExistsRequest{Key: s.key("latency-probe")})
		Expect(err).NotTo(HaveOccurred(), "Exists, to measure call latency")
		slowest = max(slowest, time.Since(t))
	}
	return max(base, (time.Duration(4*calls) * slowest).Round(time.Millisecond))
}

// withinTTL runs attempt with a TTL from lifeFor(base, calls). While attempt
// reports that a call meant to land inside the TTL returned only after the
// TTL may have ended, it runs attempt again (with a fresh try number for
// fresh keys) and twice the TTL, up to ttlTries times: a busy machine makes
// the spec wait longer; it never makes it accept a wrong answer.
func (s *session) withinTTL(base time.Duration, calls int, attempt func(life time.Duration, try int) (inTime bool)) {
	GinkgoHelper()
	life := s.lifeFor(base, calls)
	for try := 1; try <= ttlTries; try++ {
		if attempt(life, try) {
			return
		}
		AddReportEntry("ttl-retry", fmt.Sprintf("try %d: a call meant to land inside the %v TTL returned after it; retrying with %v", try, life, 2*life))
		life *= 2
	}
	Fail(fmt.Sprintf("in %d tries, with TTLs up to %v, calls meant to land inside the TTL returned after it: the machine is too slow for this spec", ttlTries, life/2))
}

func describeTTL(sess func() *session) {
	Context("ttl", basic, ttl, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		setTTL := func(k string, v []byte, d time.Duration) ttlWindow {
			GinkgoHelper()
			s.track(k)
			sent := time.Now()
			_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: k, Value: v, Ttl: durationpb.New(d)})
			Expect(err).NotTo(HaveOccurred(), "Set(%q) with TTL %v", k, d)
			return ttlWindow{life: d, sent: sent, done: time.Now()}
		}

		It("expires a key after its TTL and reads it as missing at once, before any sweep", func() {
			s.withinTTL(400*time.Millisecond, 1, func(life time.Duration, try int) bool {
				k := s.key(fmt.Sprintf("short-lived-%d", try))
				w := setTTL(k, []byte("soon gone"), life)
				got, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: k})
				if !w.inTime(time.Now()) {
					return false
				}
				Expect(err).NotTo(HaveOccurred(), "the key must be readable before its TTL ends")
				Expect(got.GetValue()).To(Equal([]byte("soon gone")), "the key must be readable before its TTL ends")
				waitPast(w.goneAt())
				s.ExpectMissing(k)
				_, err = s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
				Expect(err).To(fixture.HaveCode(codes.NotFound), "GetTTL of an expired key")
				return true
			})
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
			s.withinTTL(400*time.Millisecond, 2, func(life time.Duration, try int) bool {
				k := s.key(fmt.Sprintf("expire-me-%d", try))
				s.MustSet(k, []byte("v"))
				w := ttlWindow{life: life, sent: time.Now()}
				_, err := s.kv.Expire(s.ctx(), &keyvaluev1.ExpireRequest{Key: k, Ttl: durationpb.New(life)})
				w.done = time.Now()
				Expect(err).NotTo(HaveOccurred())
				resp, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
				if !w.inTime(time.Now()) {
					return false
				}
				Expect(err).NotTo(HaveOccurred())
				Expect(resp.GetHasExpiry()).To(BeTrue())
				Expect(resp.GetTtl().AsDuration()).To(BeNumerically("<=", life))
				waitPast(w.goneAt())
				s.ExpectMissing(k)
				return true
			})
		})

		It("returns NotFound from Expire and Persist on a missing key", func() {
			_, err := s.kv.Expire(s.ctx(), &keyvaluev1.ExpireRequest{Key: s.key("ghost"), Ttl: durationpb.New(time.Second)})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "Expire")
			_, err = s.kv.Persist(s.ctx(), &keyvaluev1.PersistRequest{Key: s.key("ghost")})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "Persist")
			s.ExpectMissing(s.key("ghost"))
		})

		It("removes a TTL with Persist so the key outlives it", func() {
			s.withinTTL(400*time.Millisecond, 1, func(life time.Duration, try int) bool {
				k := s.key(fmt.Sprintf("rescued-%d", try))
				w := setTTL(k, []byte("kept"), life)
				resp, err := s.kv.Persist(s.ctx(), &keyvaluev1.PersistRequest{Key: k})
				if !w.inTime(time.Now()) {
					return false
				}
				Expect(err).NotTo(HaveOccurred())
				Expect(resp.GetHadExpiry()).To(BeTrue())
				waitPast(w.goneAt())
				Expect(s.MustGet(k)).To(Equal([]byte("kept")))
				again, err := s.kv.Persist(s.ctx(), &keyvaluev1.PersistRequest{Key: k})
				Expect(err).NotTo(HaveOccurred())
				Expect(again.GetHadExpiry()).To(BeFalse(), "a second Persist finds no TTL")
				return true
			})
		})

		It("clears the TTL when a key is overwritten without one", func() {
			// The overwrite must land while the old TTL runs, or there is no
			// TTL left to clear.
			s.withinTTL(400*time.Millisecond, 1, func(life time.Duration, try int) bool {
				k := s.key(fmt.Sprintf("overwritten-%d", try))
				w := setTTL(k, []byte("first"), life)
				s.MustSet(k, []byte("second"))
				if !w.inTime(time.Now()) {
					return false
				}
				resp, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
				Expect(err).NotTo(HaveOccurred())
				Expect(resp.GetHasExpiry()).To(BeFalse(), "Set without TTL must clear the TTL")
				waitPast(w.goneAt())
				Expect(s.MustGet(k)).To(Equal([]byte("second")))
				return true
			})
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
