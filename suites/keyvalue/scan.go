package keyvalue

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// maxPages bounds a scan so a plugin whose cursor never ends fails instead of hanging.
const maxPages = 100_000

func describeScan(sess func() *session) {
	Context("scan", basic, scan, func() {
		var s *session
		BeforeEach(func() { s = sess() })

		// walk scans prefix with pageSize, calling between(page) after every
		// page but the last, and returns how often each key was returned.
		walk := func(prefix string, pageSize int32, withValues bool, between func(page int)) (map[string]int, map[string][]byte) {
			GinkgoHelper()
			seen := map[string]int{}
			values := map[string][]byte{}
			cursor := ""
			for page := 0; ; page++ {
				Expect(page).To(BeNumerically("<", maxPages), "scan did not end after %d pages", maxPages)
				resp, err := s.kv.Scan(s.ctx(), &keyvaluev1.ScanRequest{Prefix: prefix, PageSize: pageSize, Cursor: cursor, IncludeValues: withValues})
				Expect(err).NotTo(HaveOccurred(), "Scan page %d", page)
				Expect(len(resp.GetEntries())).To(BeNumerically("<=", pageSize), "page %d is larger than page_size", page)
				for _, e := range resp.GetEntries() {
					seen[e.GetKey()]++
					values[e.GetKey()] = e.GetValue()
				}
				if resp.GetNextCursor() == "" {
					return seen, values
				}
				cursor = resp.GetNextCursor()
				if between != nil {
					between(page)
				}
			}
		}

		expectExactlyOnce := func(seen map[string]int, want []string, prefix string) {
			GinkgoHelper()
			var missing, dup, outside []string
			for _, k := range want {
				switch seen[k] {
				case 0:
					missing = append(missing, k)
				case 1:
				default:
					dup = append(dup, fmt.Sprintf("%s (×%d)", k, seen[k]))
				}
			}
			for k, n := range seen {
				if !strings.HasPrefix(k, prefix) {
					outside = append(outside, k)
				}
				if n > 1 && !contains(want, k) {
					dup = append(dup, fmt.Sprintf("%s (×%d)", k, n))
				}
			}
			Expect(outside).To(BeEmpty(), "keys outside the prefix %q were returned", prefix)
			Expect(dup).To(BeEmpty(), "keys returned more than once")
			Expect(missing).To(BeEmpty(), "%d of %d keys never returned", len(missing), len(want))
		}

		It("returns each of 10 000 keys exactly once in small pages, and nothing outside the prefix", func() {
			p := s.key("many/")
			keys := make([]string, 10_000)
			for i := range keys {
				keys[i] = fmt.Sprintf("%s%05d", p, i)
			}
			s.setMany(keys, func(i int) []byte { return []byte{byte(i)} })
			// Neighbours that share all but the last byte of the prefix, or extend it oddly.
			decoys := []string{s.key("many"), s.key("many0"), s.key("manx/1"), s.key("many-/1"), s.key("MANY/1")}
			s.setMany(decoys, func(int) []byte { return []byte("decoy") })

			seen, _ := walk(p, 37, false, nil)
			expectExactlyOnce(seen, keys, p)
			Expect(seen).To(HaveLen(len(keys)))
		})

		It("returns keys present for the whole scan exactly once while other keys come and go between pages", func() {
			p := s.key("churn/")
			stable := make([]string, 2000)
			for i := range stable {
				stable[i] = fmt.Sprintf("%sstable-%04d", p, i)
			}
			volatile := make([]string, 500)
			for i := range volatile {
				volatile[i] = fmt.Sprintf("%svolatile-%04d", p, i)
			}
			s.setMany(stable, func(int) []byte { return []byte("s") })
			s.setMany(volatile, func(int) []byte { return []byte("v") })
			added := 0
			seen, _ := walk(p, 50, false, func(page int) {
				// Delete a volatile key and add new keys on both sides of the
				// key order between pages.
				if page < len(volatile) {
					_, err := s.kv.Delete(s.ctx(), &keyvaluev1.DeleteRequest{Key: volatile[page]})
					Expect(err).NotTo(HaveOccurred())
				}
				for _, k := range []string{fmt.Sprintf("%sadded-%04d", p, page), fmt.Sprintf("%szadded-%04d", p, page)} {
					s.MustSet(k, []byte("a"))
					added++
				}
			})
			expectExactlyOnce(seen, stable, p)
			Expect(added).To(BeNumerically(">", 0), "the scan had a single page; the spec needs several")
		})

		It("treats glob and regex characters in the prefix literally", func() {
			base := s.key("g")
			literal := []string{base + `*[x]?\.+/1`, base + `*[x]?\.+/2`}
			decoys := []string{base + `a[x]?\.+/1`, base + `*x?\.+/1`, base + `*[x]a\.+/1`, base + `*[x]?\a+/1`, base + `*[x]?\.a/1`, base + `*[x]?\.+`}
			s.setMany(literal, func(int) []byte { return []byte("l") })
			s.setMany(decoys, func(int) []byte { return []byte("d") })
			seen, _ := walk(base+`*[x]?\.+/`, 10, false, nil)
			expectExactlyOnce(seen, literal, base+`*[x]?\.+/`)
			Expect(seen).To(HaveLen(2))
		})

		It("returns values when asked, and only keys otherwise", func() {
			p := s.key("vals/")
			keys := []string{p + "a", p + "b", p + "c"}
			s.setMany(keys, func(i int) []byte { return []byte{'v', byte('0' + i)} })
			seen, values := walk(p, 2, true, nil)
			expectExactlyOnce(seen, keys, p)
			for i, k := range keys {
				Expect(values[k]).To(Equal([]byte{'v', byte('0' + i)}), "value of %q", k)
			}
			_, values = walk(p, 2, false, nil)
			for _, k := range keys {
				Expect(values[k]).To(BeEmpty(), "values were not asked for")
			}
		})

		It("returns an empty last page for a prefix nothing has", func() {
			resp, err := s.kv.Scan(s.ctx(), &keyvaluev1.ScanRequest{Prefix: s.key("nothing-here/"), PageSize: 10})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetEntries()).To(BeEmpty())
			Expect(resp.GetNextCursor()).To(BeEmpty())
		})

		It("counts the keys with a prefix, excluding deleted ones and neighbours", func() {
			p := s.key("count/")
			keys := make([]string, 250)
			for i := range keys {
				keys[i] = fmt.Sprintf("%s%03d", p, i)
			}
			s.setMany(keys, func(int) []byte { return []byte("c") })
			s.setMany([]string{s.key("count"), s.key("countX/1")}, func(int) []byte { return []byte("n") })
			for _, k := range keys[:10] {
				_, err := s.kv.Delete(s.ctx(), &keyvaluev1.DeleteRequest{Key: k})
				Expect(err).NotTo(HaveOccurred())
			}
			resp, err := s.kv.Count(s.ctx(), &keyvaluev1.CountRequest{Prefix: p})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.GetCount()).To(Equal(int64(240)))
		})
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
