package keyvalue

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/target"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// Sizes of the contention specs: bounded in count, so a correct plugin
// finishes them in seconds and a slow one fails on Call timeouts, not by
// hanging.
const (
	// insertClients clients insert insertPerClient new keys each, at once
	// (scannedPerClient each for the Count/Scan spec: what it observes is
	// that keys inserted concurrently are each listed once, which a smaller
	// set shows as well, at a quarter of the cost).
	insertClients, insertPerClient, scannedPerClient = 64, 500, 125
	// sharedKeys keys are written by sharedWriters writers, sharedWrites
	// Sets each, and read by sharedReaders readers at the same time (each
	// at most 4*sharedWrites Gets).
	sharedKeys, sharedWriters, sharedReaders, sharedWrites = 8, 16, 16, 200
	// raceKeys keys are Set by raceSetters and deleted by raceDeleters,
	// raceOps calls each, at the same time.
	raceKeys, raceSetters, raceDeleters, raceOps = 8, 8, 8, 150
	// maxProblems is how many problems a contention spec quotes; it counts
	// them all.
	maxProblems = 10
)

// problems collects what went wrong in many goroutines: a count and the
// first few, quoted in the failure.
type problems struct {
	mu    sync.Mutex
	count int
	first []string
}

func (p *problems) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count++
	if len(p.first) < maxProblems {
		p.first = append(p.first, fmt.Sprintf(format, args...))
	}
}

// expectNone asserts that nothing went wrong, quoting the first problems.
func (p *problems) expectNone(what string) {
	GinkgoHelper()
	p.mu.Lock()
	defer p.mu.Unlock()
	Expect(p.count).To(BeZero(), "%s: %d problems, the first:\n%s", what, p.count, strings.Join(p.first, "\n"))
}

// stamped is a self-describing value: the key it was written to, the writer
// and its sequence number, padding whose length varies with both (so a value
// made of parts of two writes has a wrong length or wrong bytes), and a
// CRC-32 of all that, so a torn or mixed value is caught.
func stamped(key string, writer, seq int) []byte {
	body := fmt.Sprintf("%s|w%03d|s%05d|%s", key, writer, seq, strings.Repeat(string(rune('a'+(writer+seq)%26)), 16+(writer*37+seq*11)%200))
	return []byte(fmt.Sprintf("%s|%08x", body, crc32.ChecksumIEEE([]byte(body))))
}

// stamp is what a stamped value says.
type stamp struct {
	key         string
	writer, seq int
}

// parseStamped checks a stamped value's checksum and reads it back.
func parseStamped(v []byte) (stamp, error) {
	cut := bytes.LastIndexByte(v, '|')
	if cut < 0 {
		return stamp{}, fmt.Errorf("not a value any writer wrote: %.80q", v)
	}
	body, sum := v[:cut], string(v[cut+1:])
	if want := fmt.Sprintf("%08x", crc32.ChecksumIEEE(body)); sum != want {
		return stamp{}, fmt.Errorf("torn or mixed value (checksum %s, want %s): %.80q", sum, want, v)
	}
	f := strings.Split(string(body), "|")
	if len(f) != 4 || len(f[1]) < 2 || len(f[2]) < 2 {
		return stamp{}, fmt.Errorf("not a value any writer wrote: %.80q", v)
	}
	w, err1 := strconv.Atoi(f[1][1:])
	n, err2 := strconv.Atoi(f[2][1:])
	if err1 != nil || err2 != nil {
		return stamp{}, fmt.Errorf("not a value any writer wrote: %.80q", v)
	}
	if !bytes.Equal(v, stamped(f[0], w, n)) {
		return stamp{}, fmt.Errorf("not a value any writer wrote: %.80q", v)
	}
	return stamp{key: f[0], writer: w, seq: n}, nil
}

// insertAtOnce has insertClients clients insert insertPerClient new keys
// each under prefix, all at once, and returns the keys and their values. A
// failed Set is asserted after all clients are done.
func (s *session) insertAtOnce(prefix string, insertPerClient int) ([]string, func(i int) []byte) {
	GinkgoHelper()
	n := insertClients * insertPerClient
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sc%02d/k%03d", prefix, i/insertPerClient, i%insertPerClient)
	}
	valueOf := func(i int) []byte {
		return []byte(fmt.Sprintf("client %02d, key %03d", i/insertPerClient, i%insertPerClient))
	}
	s.track(keys...)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		bad   problems
	)
	for c := range insertClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := c * insertPerClient; i < (c+1)*insertPerClient; i++ {
				if _, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: keys[i], Value: valueOf(i)}); err != nil {
					bad.add("client %d: Set(%q): %v", c, keys[i], err)
					return
				}
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	GinkgoWriter.Printf("%d clients inserted %d new keys in %v\n", insertClients, n, time.Since(began).Round(time.Millisecond))
	bad.expectNone(fmt.Sprintf("%d clients inserting %d new keys each at once", insertClients, insertPerClient))
	return keys, valueOf
}

// history is what the writers and readers of shared keys did, with when
// each call was sent and answered, to check every read against the writes.
type history struct {
	mu     sync.Mutex
	writes []op
	reads  []op
}

// op is one Set or Get of key number key: the value it wrote or read (by
// writer and seq), sent at start and answered at end.
type op struct {
	key, writer, seq int
	start, end       time.Time
}

func (h *history) wrote(key, writer, seq int, start, end time.Time) {
	h.mu.Lock()
	h.writes = append(h.writes, op{key, writer, seq, start, end})
	h.mu.Unlock()
}

func (h *history) read(key, writer, seq int, start, end time.Time) {
	h.mu.Lock()
	h.reads = append(h.reads, op{key, writer, seq, start, end})
	h.mu.Unlock()
}

// check adds a problem for every read that no order of the calls could
// explain: one that returned a write sent only after the read was answered,
// or a write W overwritten before the read was sent, by a write X sent after
// W was answered and answered before the read was sent.
func (h *history) check(bad *problems, keys []string) {
	type id struct{ key, writer, seq int }
	byID := map[id]op{}
	byKey := make([][]op, len(keys)) // sorted by start
	for _, w := range h.writes {
		byID[id{w.key, w.writer, w.seq}] = w
		byKey[w.key] = append(byKey[w.key], w)
	}
	// firstEnd[k][j] is the earliest end of the writes of key k from the
	// j-th (by start) on.
	firstEnd := make([][]time.Time, len(keys))
	for k, ws := range byKey {
		slices.SortFunc(ws, func(a, b op) int { return a.start.Compare(b.start) })
		firstEnd[k] = make([]time.Time, len(ws)+1)
		firstEnd[k][len(ws)] = time.Now().Add(time.Hour)
		for j := len(ws) - 1; j >= 0; j-- {
			firstEnd[k][j] = ws[j].end
			if firstEnd[k][j+1].Before(ws[j].end) {
				firstEnd[k][j] = firstEnd[k][j+1]
			}
		}
	}
	for _, r := range h.reads {
		w, ok := byID[id{r.key, r.writer, r.seq}]
		switch {
		case !ok || w.start.After(r.end):
			bad.add("Get(%q) returned writer %d's write %d, which was not sent before the Get was answered", keys[r.key], r.writer, r.seq)
		default:
			ws := byKey[r.key]
			j, _ := slices.BinarySearchFunc(ws, w.end, func(x op, t time.Time) int {
				if x.start.After(t) {
					return 1
				}
				return -1
			})
			if firstEnd[r.key][j].Before(r.start) {
				bad.add("Get(%q) returned writer %d's write %d, which a later write had overwritten before the Get was sent (stale read)",
					keys[r.key], r.writer, r.seq)
			}
		}
	}
}

func describeContention(sess func() *session) {
	Context("contention", basic, load, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		It("keeps every new key that 64 clients insert at once (500 each; 125 each through the proxy), each reading back exactly its value", func() {
			perClient := insertPerClient
			if s.fx.Target.Via == target.Proxy {
				// The plugin's storage is what loses keys, and the direct
				// run loads it with 32 000; through the proxy the promise is
				// observed as well with 8 000, at a quarter of the cost.
				perClient = scannedPerClient
			}
			keys, valueOf := s.insertAtOnce(s.key("insert/"), perClient)
			// Every client reads back its keys once all clients are done,
			// so a key lost by a later insert is caught too.
			var (
				wg  sync.WaitGroup
				bad problems
			)
			began := time.Now()
			for c := range insertClients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := c * perClient; i < (c+1)*perClient; i++ {
						resp, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: keys[i]})
						switch {
						case status.Code(err) == codes.NotFound:
							bad.add("client %d: %q is lost (NotFound)", c, keys[i])
						case err != nil:
							bad.add("client %d: Get(%q): %v", c, keys[i], err)
						case !bytes.Equal(resp.GetValue(), valueOf(i)):
							bad.add("client %d: Get(%q) = %.60q, want %q", c, keys[i], resp.GetValue(), valueOf(i))
						}
					}
				}()
			}
			wg.Wait()
			GinkgoWriter.Printf("%d clients read back %d keys in %v\n", insertClients, len(keys), time.Since(began).Round(time.Millisecond))
			bad.expectNone("reading back the keys inserted at once")
		})

		It("gives readers only whole, current values some writer wrote while 16 writers and 16 readers share 8 keys, and ends with each key holding a writer's last write", func() {
			keys := make([]string, sharedKeys)
			for i := range keys {
				keys[i] = s.key(fmt.Sprintf("shared-%d", i))
			}
			// Writer w's n-th Set goes to key (w+n) mod sharedKeys; the
			// seed writer (number sharedWriters) writes each key first.
			keyOf := func(w, n int) int { return (w + n) % sharedKeys }
			var h history
			for i, k := range keys {
				began := time.Now()
				s.MustSet(k, stamped(k, sharedWriters, i))
				h.wrote(i, sharedWriters, i, began, time.Now())
			}
			var (
				writers, readers sync.WaitGroup
				done             atomic.Bool
				bad              problems
			)
			start := make(chan struct{})
			for w := range sharedWriters {
				writers.Add(1)
				go func() {
					defer writers.Done()
					<-start
					for n := range sharedWrites {
						i := keyOf(w, n)
						began := time.Now()
						_, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: keys[i], Value: stamped(keys[i], w, n)})
						// A failed Set may still have been written: it is in
						// the history either way, and fails the spec.
						h.wrote(i, w, n, began, time.Now())
						if err != nil {
							bad.add("writer %d: Set(%q): %v", w, keys[i], err)
							return
						}
					}
				}()
			}
			for r := range sharedReaders {
				readers.Add(1)
				go func() {
					defer readers.Done()
					<-start
					for n := 0; !done.Load() && n < 4*sharedWrites; n++ {
						i := (r + n) % sharedKeys
						began := time.Now()
						resp, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: keys[i]})
						ended := time.Now()
						if err != nil {
							bad.add("reader %d: Get(%q): %v", r, keys[i], err)
							return
						}
						st, err := parseStamped(resp.GetValue())
						switch {
						case err != nil:
							bad.add("reader %d: Get(%q): %v", r, keys[i], err)
						case st.key != keys[i]:
							bad.add("reader %d: Get(%q) returned the value written to %q", r, keys[i], st.key)
						default:
							h.read(i, st.writer, st.seq, began, ended)
						}
					}
				}()
			}
			began := time.Now()
			close(start)
			writers.Wait()
			done.Store(true)
			readers.Wait()
			GinkgoWriter.Printf("%d writers made %d Sets and %d readers %d Gets on %d keys in %v\n",
				sharedWriters, sharedWriters*sharedWrites, sharedReaders, len(h.reads), sharedKeys, time.Since(began).Round(time.Millisecond))
			bad.expectNone("writers and readers sharing keys")
			h.check(&bad, keys)
			bad.expectNone("what the readers read while writers wrote")

			// Every writer's last Set to a key is a candidate for its final
			// value; nothing else is.
			lastWrite := func(w, i int) int {
				for n := sharedWrites - 1; n >= 0; n-- {
					if keyOf(w, n) == i {
						return n
					}
				}
				return -1
			}
			for i, k := range keys {
				first := s.MustGet(k)
				Expect(s.MustGet(k)).To(Equal(first), "%q changed after every writer stopped", k)
				st, err := parseStamped(first)
				Expect(err).NotTo(HaveOccurred(), "final value of %q", k)
				Expect(st.key).To(Equal(k), "final value of %q was written to another key", k)
				Expect(st.writer).To(BeNumerically("<", sharedWriters), "%q still holds the seed value after every writer wrote it", k)
				Expect(st.seq).To(Equal(lastWrite(st.writer, i)),
					"%q holds writer %d's write %d, but that writer wrote it again later: a write was lost", k, st.writer, st.seq)
			}
		})
		It("keeps a key whose last Set came after every Delete it raced with, and never shows a value nobody wrote", func() {
			keys := make([]string, raceKeys)
			for i := range keys {
				keys[i] = s.key(fmt.Sprintf("raced-%d", i))
			}
			s.track(keys...)
			var (
				setters, deleters, readers sync.WaitGroup
				done                       atomic.Bool
				bad                        problems
			)
			start := make(chan struct{})
			for w := range raceSetters {
				setters.Add(1)
				go func() {
					defer setters.Done()
					<-start
					for n := range raceOps {
						k := keys[(w+n)%raceKeys]
						if _, err := s.kv.Set(s.ctx(), &keyvaluev1.SetRequest{Key: k, Value: stamped(k, w, n)}); err != nil {
							bad.add("setter %d: Set(%q): %v", w, k, err)
							return
						}
					}
				}()
			}
			for d := range raceDeleters {
				deleters.Add(1)
				go func() {
					defer deleters.Done()
					<-start
					for n := range raceOps {
						k := keys[(d+2*n)%raceKeys]
						if _, err := s.kv.Delete(s.ctx(), &keyvaluev1.DeleteRequest{Key: k}); err != nil {
							bad.add("deleter %d: Delete(%q): %v", d, k, err)
							return
						}
					}
				}()
			}
			for r := range 4 {
				readers.Add(1)
				go func() {
					defer readers.Done()
					<-start
					for n := 0; !done.Load() && n < 4*raceOps; n++ {
						k := keys[(r+n)%raceKeys]
						resp, err := s.kv.Get(s.ctx(), &keyvaluev1.GetRequest{Key: k})
						if status.Code(err) == codes.NotFound {
							continue
						}
						if err != nil {
							bad.add("reader %d: Get(%q): %v", r, k, err)
							return
						}
						if st, err := parseStamped(resp.GetValue()); err != nil {
							bad.add("reader %d: Get(%q): %v", r, k, err)
						} else if st.key != k {
							bad.add("reader %d: Get(%q) returned the value written to %q", r, k, st.key)
						}
					}
				}()
			}
			close(start)
			setters.Wait()
			deleters.Wait()
			done.Store(true)
			readers.Wait()
			bad.expectNone("Sets and Deletes racing on the same keys")

			// Every Delete has returned: a Set sent now is the last word.
			for i, k := range keys {
				s.MustSet(k, stamped(k, raceSetters, i))
			}
			for i, k := range keys {
				want := stamped(k, raceSetters, i)
				Expect(s.MustGet(k)).To(Equal(want), "%q after its last Set, which came after every Delete", k)
				Expect(s.MustGet(k)).To(Equal(want), "%q read again", k)
			}
		})
	})

	Context("contention through scan", basic, scan, load, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		It("counts and scans exactly the 8 000 new keys that 64 clients inserted at once", func() {
			prefix := s.key("counted/")
			keys, _ := s.insertAtOnce(prefix, scannedPerClient)
			resp, err := s.kv.Count(s.ctx(), &keyvaluev1.CountRequest{Prefix: prefix})
			Expect(err).NotTo(HaveOccurred(), "Count")
			Expect(resp.GetCount()).To(Equal(int64(len(keys))), "Count of the keys inserted at once")
			var got []string
			cursor := ""
			for page := 0; ; page++ {
				Expect(page).To(BeNumerically("<", 2*len(keys)/1000+10), "Scan of %d keys did not end", len(keys))
				resp, err := s.kv.Scan(s.ctx(), &keyvaluev1.ScanRequest{Prefix: prefix, PageSize: 1000, Cursor: cursor})
				Expect(err).NotTo(HaveOccurred(), "Scan page %d", page)
				for _, e := range resp.GetEntries() {
					got = append(got, e.GetKey())
				}
				if cursor = resp.GetNextCursor(); cursor == "" {
					break
				}
			}
			slices.Sort(got)
			want := slices.Clone(keys)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				var missing, extra []string
				for _, k := range want {
					if _, found := slices.BinarySearch(got, k); !found {
						missing = append(missing, k)
					}
				}
				for i, k := range got {
					if _, found := slices.BinarySearch(want, k); !found || (i > 0 && got[i-1] == k) {
						extra = append(extra, k)
					}
				}
				Fail(fmt.Sprintf("Scan returned %d keys, want %d: %d missing (first: %q), %d extra or repeated (first: %q)",
					len(got), len(want), len(missing), missing[:min(5, len(missing))], len(extra), extra[:min(5, len(extra))]))
			}
		})
	})
}
