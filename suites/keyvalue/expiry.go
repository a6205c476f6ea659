package keyvalue

import (
	"fmt"
	"math"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// shortLife is the TTL of keys the expiry specs let run out.
const shortLife = 400 * time.Millisecond

// hugeTTLs are TTLs a plugin must keep (the key stays, with a sane TTL) or
// refuse with InvalidArgument naming the field; they catch overflow when a
// plugin converts a TTL to its backend's unit or adds it to a clock.
var hugeTTLs = []struct {
	name string
	ttl  *durationpb.Duration
}{
	{"the largest Go duration (math.MaxInt64 ns)", durationpb.New(math.MaxInt64)},
	{"one second beyond the largest Go duration", &durationpb.Duration{Seconds: math.MaxInt64/int64(time.Second) + 1}},
	{"300 years", &durationpb.Duration{Seconds: 300 * 365 * 24 * 3600}},
}

// saneHugeTTL is the least remaining TTL a kept huge TTL may report: far
// beyond any real TTL, so a wrapped or clamped-to-small value shows.
const saneHugeTTL = 100 * 365 * 24 * time.Hour

// describeExpiry registers specs that observe expiry through every operation
// other than Get and BatchGet, and specs for huge TTLs. A key whose TTL has
// ended must be gone for every operation at once, whether or not the plugin
// has reclaimed it; each spec observes through one operation first, before
// any Get could make the plugin reclaim the key.
func describeExpiry(sess func() *session) {
	var s *session

	// expired sets each key with shortLife and waits until every TTL has
	// ended (each started before its Set returned, however slow the call).
	expired := func(keys ...string) {
		GinkgoHelper()
		s.track(keys...)
		for _, k := range keys {
			_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: k, Value: []byte("short-lived"), Ttl: durationpb.New(shortLife)})
			Expect(err).NotTo(HaveOccurred(), "Set(%q) with TTL %v", k, shortLife)
		}
		waitPast(time.Now().Add(shortLife + expiryMargin))
	}

	// expectKeptHuge asserts that k holds want and reports a TTL that is
	// sane for a huge TTL no larger than asked.
	expectKeptHuge := func(k string, want []byte, asked *durationpb.Duration, what string) {
		GinkgoHelper()
		Expect(s.MustGet(k)).To(Equal(want), "%s: the key must be kept", what)
		resp, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
		Expect(err).NotTo(HaveOccurred(), "%s: GetTTL", what)
		Expect(resp.GetHasExpiry()).To(BeTrue(), "%s: a key kept with a TTL must report an expiry", what)
		got := resp.GetTtl().AsDuration()
		Expect(got).To(BeNumerically(">=", saneHugeTTL), "%s: remaining TTL %v, want at least %v", what, got, saneHugeTTL)
		if asked.AsDuration() < math.MaxInt64 {
			Expect(got).To(BeNumerically("<=", asked.AsDuration()), "%s: remaining TTL is longer than asked", what)
		}
	}

	Context("ttl", basic, ttl, func() {
		BeforeEach(func() { s = sess() })

		It("reports existed=false from Delete of a key whose TTL has ended", func() {
			k := s.key("delete-expired")
			expired(k)
			resp, err := s.kv.Delete(s.ctx(), &keyvaluev1.DeleteRequest{Key: k})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetExisted()).To(BeFalse(), "Delete of a key whose TTL has ended reported existed=true")
		})

		It("answers Exists false for a key whose TTL has ended", func() {
			k := s.key("exists-expired")
			expired(k)
			resp, err := s.kv.Exists(s.ctx(), &keyvaluev1.ExistsRequest{Key: k})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetExists()).To(BeFalse(), "Exists of a key whose TTL has ended")
		})

		It("returns NotFound from GetTTL of a key whose TTL has ended", func() {
			k := s.key("getttl-expired")
			expired(k)
			resp, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "GetTTL of a key whose TTL has ended answered %v", resp)
		})

		It("returns NotFound from Expire of a key whose TTL has ended, and does not bring it back", func() {
			k := s.key("expire-expired")
			expired(k)
			_, err := s.kv.Expire(s.ctx(), &keyvaluev1.ExpireRequest{Key: k, Ttl: durationpb.New(time.Hour)})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "Expire of a key whose TTL has ended")
			s.ExpectMissing(k)
		})

		It("returns NotFound from Persist of a key whose TTL has ended, and does not bring it back", func() {
			k := s.key("persist-expired")
			expired(k)
			resp, err := s.kv.Persist(s.ctx(), &keyvaluev1.PersistRequest{Key: k})
			Expect(err).To(fixture.HaveCode(codes.NotFound), "Persist of a key whose TTL has ended answered %v", resp)
			s.ExpectMissing(k)
		})

		It("keeps a key readable, with its TTL counting down, at three quarters of a TTL of 3 s or more", func() {
			s.withinTTL(3*time.Second, 3, func(life time.Duration, try int) bool {
				k := s.key(fmt.Sprintf("not-early-%d", try))
				s.track(k)
				w := ttlWindow{life: life, sent: time.Now()}
				_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: k, Value: []byte("still here"), Ttl: durationpb.New(life)})
				w.done = time.Now()
				Expect(err).NotTo(HaveOccurred(), "Set(%q) with TTL %v", k, life)
				waitPast(w.sent.Add(life * 3 / 4))
				got, getErr := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: k})
				ex, exErr := s.kv.Exists(s.ctx(), &keyvaluev1.ExistsRequest{Key: k})
				ttlAsked := time.Now()
				rem, ttlErr := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
				ttlAnswered := time.Now()
				if !w.inTime(ttlAnswered) {
					return false
				}
				at := ttlAsked.Sub(w.sent).Round(time.Millisecond)
				Expect(getErr).NotTo(HaveOccurred(), "Get at %v of a %v TTL", at, life)
				Expect(got.GetValue()).To(Equal([]byte("still here")))
				Expect(exErr).NotTo(HaveOccurred(), "Exists")
				Expect(ex.GetExists()).To(BeTrue(), "Exists at %v of a %v TTL", at, life)
				Expect(ttlErr).NotTo(HaveOccurred(), "GetTTL at %v of a %v TTL", at, life)
				Expect(rem.GetHasExpiry()).To(BeTrue(), "GetTTL has_expiry")
				// The TTL started between w.sent and w.done and GetTTL was
				// answered between ttlAsked and ttlAnswered, which bounds what
				// is left both ways (give or take 2 ms for backends that count
				// in whole milliseconds).
				minLeft := life - ttlAnswered.Sub(w.sent) - 2*time.Millisecond
				maxLeft := life - ttlAsked.Sub(w.done) + 2*time.Millisecond
				Expect(rem.GetTtl().AsDuration()).To(And(BeNumerically(">=", minLeft), BeNumerically("<=", maxLeft)),
					"remaining TTL at %v of a %v TTL", at, life)
				return true
			})
		})

		It("keeps or refuses a huge TTL on Set, never dropping the expiry or the key", func() {
			for i, h := range hugeTTLs {
				k := s.key(fmt.Sprintf("huge-set-%d", i))
				s.track(k)
				_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: k, Value: []byte("long-lived"), Ttl: h.ttl})
				if err != nil {
					Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "ttl"), "Set with a TTL of %s", h.name)
					s.ExpectMissing(k)
					continue
				}
				expectKeptHuge(k, []byte("long-lived"), h.ttl, "Set with a TTL of "+h.name)
			}
		})

		It("keeps or refuses a huge TTL on Expire, never deleting the key", func() {
			for i, h := range hugeTTLs {
				k := s.key(fmt.Sprintf("huge-expire-%d", i))
				s.MustSet(k, []byte("long-lived"))
				_, err := s.kv.Expire(s.ctx(), &keyvaluev1.ExpireRequest{Key: k, Ttl: h.ttl})
				if err != nil {
					Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "ttl"), "Expire with a TTL of %s", h.name)
					Expect(s.MustGet(k)).To(Equal([]byte("long-lived")), "a refused Expire must leave the key")
					resp, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
					Expect(err).NotTo(HaveOccurred())
					Expect(resp.GetHasExpiry()).To(BeFalse(), "a refused Expire must leave the key without expiry")
					continue
				}
				expectKeptHuge(k, []byte("long-lived"), h.ttl, "Expire with a TTL of "+h.name)
			}
		})
	})

	Context("ttl through scan", basic, scan, ttl, func() {
		BeforeEach(func() { s = sess() })

		It("leaves a key whose TTL has ended out of Scan, with and without values, in any page size", func() {
			p := s.key("scan/")
			s.MustSet(p+"kept", []byte("kept"))
			expired(p+"a-gone", p+"z-gone")
			for _, size := range []int32{1, 100} {
				for _, withValues := range []bool{false, true} {
					var got []string
					cursor := ""
					for page := 0; ; page++ {
						Expect(page).To(BeNumerically("<", 10), "Scan of 3 keys did not end after 10 pages")
						resp, err := s.kv.Scan(s.ctx(), &keyvaluev1.ScanRequest{Prefix: p, PageSize: size, Cursor: cursor, IncludeValues: withValues})
						Expect(err).NotTo(HaveOccurred(), "Scan page %d (page_size %d)", page, size)
						for _, e := range resp.GetEntries() {
							got = append(got, e.GetKey())
						}
						if cursor = resp.GetNextCursor(); cursor == "" {
							break
						}
					}
					slices.Sort(got)
					Expect(got).To(Equal([]string{p + "kept"}), "Scan (page_size %d, include_values %v) of keys whose TTL has ended", size, withValues)
				}
			}
		})

		It("leaves a key whose TTL has ended out of Count", func() {
			p := s.key("count/")
			s.MustSet(p+"kept", []byte("kept"))
			expired(p+"gone-1", p+"gone-2")
			resp, err := s.kv.Count(s.ctx(), &keyvaluev1.CountRequest{Prefix: p})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetCount()).To(Equal(int64(1)), "Count of one live key and two whose TTL has ended")
		})
	})

	Context("ttl through batch", basic, batch, ttl, func() {
		BeforeEach(func() { s = sess() })

		It("reports existed=false from BatchDelete for a key whose TTL has ended", func() {
			gone, kept := s.key("bdel-gone"), s.key("bdel-kept")
			s.MustSet(kept, []byte("kept"))
			expired(gone)
			resp, err := s.kv.BatchDelete(s.ctx(), &keyvaluev1.BatchDeleteRequest{Keys: []string{gone, kept}})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetExisted()).To(Equal([]bool{false, true}), "existed for [expired, live]")
		})

		It("clears the TTL when BatchSet overwrites a key without one", func() {
			// The overwrite must land while the old TTL runs, or there is no
			// TTL left to clear.
			s.withinTTL(shortLife, 1, func(life time.Duration, try int) bool {
				k := s.key(fmt.Sprintf("bset-overwritten-%d", try))
				s.track(k)
				w := ttlWindow{life: life, sent: time.Now()}
				_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: k, Value: []byte("first"), Ttl: durationpb.New(life)})
				w.done = time.Now()
				Expect(err).NotTo(HaveOccurred())
				_, err = s.kv.BatchSet(s.ctx(), &keyvaluev1.BatchSetRequest{Entries: []*keyvaluev1.Entry{{Key: k, Value: []byte("second")}}})
				Expect(err).NotTo(HaveOccurred())
				if !w.inTime(time.Now()) {
					return false
				}
				resp, err := s.kv.GetTTL(s.ctx(), &keyvaluev1.GetTTLRequest{Key: k})
				Expect(err).NotTo(HaveOccurred())
				Expect(resp.GetHasExpiry()).To(BeFalse(), "BatchSet without TTL must clear the TTL, as Set does")
				waitPast(w.goneAt())
				Expect(s.MustGet(k)).To(Equal([]byte("second")), "the key overwritten by BatchSet outlived the old TTL")
				return true
			})
		})

		It("keeps or refuses a huge TTL on BatchSet, never dropping the expiry or the keys", func() {
			for i, h := range hugeTTLs {
				ks := []string{s.key(fmt.Sprintf("huge-bset-%d-a", i)), s.key(fmt.Sprintf("huge-bset-%d-b", i))}
				s.track(ks...)
				_, err := s.kv.BatchSet(s.ctx(), &keyvaluev1.BatchSetRequest{
					Entries: []*keyvaluev1.Entry{{Key: ks[0], Value: []byte("a")}, {Key: ks[1], Value: []byte("b")}},
					Ttl:     h.ttl,
				})
				if err != nil {
					Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, "ttl"), "BatchSet with a TTL of %s", h.name)
					s.ExpectMissing(ks[0])
					s.ExpectMissing(ks[1])
					continue
				}
				expectKeptHuge(ks[0], []byte("a"), h.ttl, "BatchSet with a TTL of "+h.name)
				expectKeptHuge(ks[1], []byte("b"), h.ttl, "BatchSet with a TTL of "+h.name)
			}
		})
	})
}
