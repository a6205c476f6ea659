// Package keyvalue holds the Ginkgo specs that certify the KeyValue
// capabilities: keyvalue.basic, keyvalue.ttl, keyvalue.scan, keyvalue.batch.
//
// [Register] only registers specs; it never calls RunSpecs, so the specs can
// run from prism-accept or nested inside a plugin author's own suite. Every
// spec carries its capability as a Ginkgo label and is skipped, with that
// reason, when the plugin does not declare it. The fixture is read when each
// spec runs, not at registration.
package keyvalue

import (
	"context"
	"slices"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// Labels of the KeyValue capabilities.
var (
	basic = Label(string(capability.KeyValueBasic))
	ttl   = Label(string(capability.KeyValueTTL))
	scan  = Label(string(capability.KeyValueScan))
	batch = Label(string(capability.KeyValueBatch))
	// load marks the contention specs, the costliest of keyvalue.basic: a
	// certification runs them like any other; a run that needs only a
	// quick answer can leave them out with --label-filter '... && !load'.
	load = Label("load")
)

// Register adds the KeyValue specs to the Ginkgo tree under "KeyValue".
// Call it at the top level of a test file or inside a container.
func Register(p fixture.Provider) bool {
	return Describe("KeyValue", func() {
		var s *session
		BeforeEach(func() {
			fx := p()
			fixture.Gate(fx)
			s = newSession(fx)
			DeferCleanup(s.cleanup)
		})
		describeBasic(func() *session { return s })
		describeTTL(func() *session { return s })
		describeExpiry(func() *session { return s })
		describeScan(func() *session { return s })
		describeBatch(func() *session { return s })
		describeFaults(func() *session { return s })
		describeCluster(func() *session { return s })
		describeContention(func() *session { return s })
		describeMutationGaps(func() *session { return s })
	})
}

// session is one spec's view: the fixture, a client, the spec's key prefix
// and the keys it wrote, deleted again when the spec ends.
type session struct {
	fx     *fixture.Fixture
	kv     keyvaluev1.KeyValueClient
	prefix string

	mu   sync.Mutex
	made []string
}

func newSession(fx *fixture.Fixture) *session {
	return &session{fx: fx, kv: fx.Target.KeyValue(), prefix: fx.Prefix()}
}

// key returns the spec-unique key for name.
func (s *session) key(name string) string { return s.prefix + name }

func (s *session) track(keys ...string) {
	s.mu.Lock()
	s.made = append(s.made, keys...)
	s.mu.Unlock()
}

// ctx returns a context bounded by the call timeout.
func (s *session) ctx() context.Context { return s.fx.Ctx() }

// MustSet sets key to value and asserts success.
func (s *session) MustSet(key string, value []byte) {
	GinkgoHelper()
	s.track(key)
	_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: key, Value: value})
	Expect(err).NotTo(HaveOccurred(), "Set(%q)", key)
}

// MustGet returns the value of key and asserts success.
func (s *session) MustGet(key string) []byte {
	GinkgoHelper()
	resp, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: key})
	Expect(err).NotTo(HaveOccurred(), "Get(%q)", key)
	return resp.GetValue()
}

// ExpectMissing asserts that Get of key answers NotFound and Exists false.
func (s *session) ExpectMissing(key string) {
	GinkgoHelper()
	_, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: key})
	Expect(err).To(fixture.HaveCode(codes.NotFound), "Get(%q)", key)
	ex, err := s.kv.Exists(s.ctx(), &keyvaluev1.ExistsRequest{Key: key})
	Expect(err).NotTo(HaveOccurred(), "Exists(%q)", key)
	Expect(ex.GetExists()).To(BeFalse(), "Exists(%q)", key)
}

// declared reports whether the plugin declared c.
func (s *session) declared(c capability.Name) bool { return s.fx.Declared().Has(c) }

// setMany writes n keys made by keyOf with values made by valueOf, by batch
// when the plugin declares it, else by concurrent Sets.
func (s *session) setMany(keys []string, valueOf func(i int) []byte) {
	GinkgoHelper()
	s.track(keys...)
	if s.declared(capability.KeyValueBatch) {
		size := int(s.fx.Description.GetLimits().GetMaxBatchSize())
		if size <= 0 || size > 500 {
			size = 500
		}
		for start := 0; start < len(keys); start += size {
			end := min(start+size, len(keys))
			req := &keyvaluev1.BatchSetRequest{}
			for i := start; i < end; i++ {
				req.Entries = append(req.Entries, &keyvaluev1.Entry{Key: keys[i], Value: valueOf(i)})
			}
			_, err := s.kv.BatchSet(s.ctx(), req)
			Expect(err).NotTo(HaveOccurred(), "BatchSet of %d entries", end-start)
		}
		return
	}
	parallel(len(keys), 32, func(i int) error {
		_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: keys[i], Value: valueOf(i)})
		return err
	})
}

// cleanup deletes every key the spec wrote: by BatchDelete when the plugin
// declares it, else by Delete, 16 calls in flight, each bounded by the call
// timeout, so cleaning up after the contention specs' 32 000 keys takes a
// small part of the spec. Errors are ignored: keys are spec-unique.
func (s *session) cleanup() {
	s.mu.Lock()
	keys := s.made
	s.made = nil
	s.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	size := 1
	if s.declared(capability.KeyValueBatch) {
		size = int(s.fx.Description.GetLimits().GetMaxBatchSize())
		if size <= 0 || size > 500 {
			size = 500
		}
	}
	var wg sync.WaitGroup
	chunks := make(chan []string)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chunk := range chunks {
				ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Call)
				if size == 1 {
					_, _ = s.kv.Delete(ctx, &keyvaluev1.DeleteRequest{Key: chunk[0]})
				} else {
					_, _ = s.kv.BatchDelete(ctx, &keyvaluev1.BatchDeleteRequest{Keys: chunk})
				}
				cancel()
			}
		}()
	}
	for start := 0; start < len(keys); start += size {
		chunks <- keys[start:min(start+size, len(keys))]
	}
	close(chunks)
	wg.Wait()
}

// parallel runs fn(0..n-1) on up to workers goroutines and asserts that
// every call succeeded, reporting the first error.
func parallel(n, workers int, fn func(i int) error) {
	GinkgoHelper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		fails int
	)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					fails++
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	Expect(first).NotTo(HaveOccurred(), "%d of %d concurrent calls failed; first error", fails, n)
}
