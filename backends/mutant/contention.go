package mutant

import (
	"bytes"
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// contentionMutants are defects that only show when many calls are in
// flight at once: each behaves correctly for one client calling one call at
// a time, which is how most specs drive a plugin.
var contentionMutants = []Mutant{
	{Name: "insert-lost-in-resize", Breaks: capability.KeyValueBasic,
		Defect: "a Set of a new key that arrives while the key table grows (every 2048 new keys) is acknowledged but lost",
		unary:  growingTable(false)},
	{Name: "insert-refused-in-resize", Breaks: capability.KeyValueBasic,
		Defect: "a Set of a new key that arrives while the key table grows (every 2048 new keys) fails with Unavailable instead of waiting",
		unary:  growingTable(true)},
	{Name: "torn-write", Breaks: capability.KeyValueBasic,
		Defect: "Set writes a value in two halves without a lock, so concurrent Sets of one key can leave one writer's first half with another's second",
		unary:  tornWrite},
	{Name: "stale-cache", Breaks: capability.KeyValueBasic,
		Defect: "Get fills a read cache after reading the store, so a Get racing a Set can cache the old value until the next Set",
		unary:  staleCache},
}

func init() { all = append(all, contentionMutants...) }

// Sizes of the growingTable mutants.
const (
	// tableStep is the key table's first capacity and what each growth
	// adds: more keys than any spec but the contention specs writes with
	// Set at once, and a quarter of the fewest those write (8 000), so each
	// of them crosses a growth within its first 2 048 keys, while all its
	// clients are busy, whatever the specs before it wrote. (Doubling made
	// whether the 8 000-key spec crossed one at all depend on how many keys
	// the specs before it had left: in one CI run it did not.)
	tableStep = 2048
	// resizeTime is how long growing the table takes.
	resizeTime = 20 * time.Millisecond
)

// growingTable counts the distinct keys written with Set in a table that
// never shrinks; the Set that fills it grows it by tableStep, which takes resizeTime,
// during which a Set of another new key is dropped (acknowledged without
// being written) or, with refuse, answered Unavailable. One client calling
// one call at a time never sees it: the Set that grows the table waits for
// the resize.
func growingTable(refuse bool) func() grpc.UnaryServerInterceptor {
	return func() grpc.UnaryServerInterceptor {
		var (
			mu       sync.Mutex
			keys     = map[string]bool{}
			capacity = tableStep
			resizing bool
		)
		return on("Set", func(_ context.Context, req *keyvaluev1.SetRequest, call func(*keyvaluev1.SetRequest) (any, error)) (any, error) {
			mu.Lock()
			if keys[req.GetKey()] || req.GetKey() == "" {
				mu.Unlock()
				return call(req)
			}
			if resizing {
				mu.Unlock()
				if refuse {
					return nil, status.Error(codes.Unavailable, "key table is resizing")
				}
				return &keyvaluev1.SetResponse{}, nil
			}
			keys[req.GetKey()] = true
			grow := len(keys) >= capacity
			if grow {
				capacity += tableStep
				resizing = true
			}
			mu.Unlock()
			if grow {
				time.Sleep(resizeTime) // copying the table
				mu.Lock()
				resizing = false
				mu.Unlock()
			}
			return call(req)
		})()
	}
}

// tornWrite stages each Set's value in two halves per key, without holding
// a lock across them, and writes whatever the two halves hold then.
func tornWrite() grpc.UnaryServerInterceptor {
	type staged struct {
		half     [2][]byte
		inFlight int
	}
	var (
		mu    sync.Mutex
		byKey = map[string]*staged{}
	)
	return on("Set", func(_ context.Context, req *keyvaluev1.SetRequest, call func(*keyvaluev1.SetRequest) (any, error)) (any, error) {
		v := req.GetValue()
		if len(v) < 2 {
			return call(req)
		}
		mu.Lock()
		st := byKey[req.GetKey()]
		if st == nil {
			st = &staged{}
			byKey[req.GetKey()] = st
		}
		st.inFlight++
		st.half[0] = v[:len(v)/2]
		mu.Unlock()
		time.Sleep(100 * time.Microsecond) // the first half's round trip
		mu.Lock()
		st.half[1] = v[len(v)/2:]
		req.Value = bytes.Join(st.half[:], nil)
		if st.inFlight--; st.inFlight == 0 {
			delete(byKey, req.GetKey())
		}
		mu.Unlock()
		return call(req)
	})()
}

// staleCache caches Get answers of keys written without a TTL. A Set or a
// Delete drops the key from the cache before writing; a Get that missed
// fills the cache after its read, so when a Set lands between the read and
// the fill, the old value stays cached until the key is written again.
func staleCache() grpc.UnaryServerInterceptor {
	var (
		mu     sync.Mutex
		cache  = map[string][]byte{}
		hasTTL = map[string]bool{}
	)
	drop := func(ttl bool, keys ...string) {
		mu.Lock()
		for _, k := range keys {
			delete(cache, k)
			if ttl {
				hasTTL[k] = true
			}
		}
		mu.Unlock()
	}
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		switch r := req.(type) {
		case *keyvaluev1.GetRequest:
			mu.Lock()
			v, hit := cache[r.GetKey()]
			mu.Unlock()
			if hit {
				return &keyvaluev1.GetResponse{Value: v}, nil
			}
			resp, err := h(ctx, req)
			if err != nil {
				return nil, err
			}
			time.Sleep(200 * time.Microsecond) // deciding whether to cache it
			mu.Lock()
			if !hasTTL[r.GetKey()] {
				cache[r.GetKey()] = resp.(*keyvaluev1.GetResponse).GetValue()
			}
			mu.Unlock()
			return resp, nil
		case *keyvaluev1.SetRequest:
			drop(r.GetTtl() != nil, r.GetKey())
		case *keyvaluev1.DeleteRequest:
			drop(false, r.GetKey())
		case *keyvaluev1.ExpireRequest:
			drop(true, r.GetKey())
		case *keyvaluev1.PersistRequest:
			drop(false, r.GetKey())
		case *keyvaluev1.BatchSetRequest:
			keys := make([]string, len(r.GetEntries()))
			for i, e := range r.GetEntries() {
				keys[i] = e.GetKey()
			}
			drop(r.GetTtl() != nil, keys...)
		case *keyvaluev1.BatchDeleteRequest:
			drop(false, r.GetKeys()...)
		}
		return h(ctx, req)
	}
}
