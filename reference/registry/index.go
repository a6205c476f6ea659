package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// An index is the coordinator's copy, in memory, of every key under one
// prefix of the registry slot (the records, or the presence keys), so that
// Enumerate and Multicast read one key instead of every record per call.
//
// The slot stays the source of truth. Every change a coordinator makes
// under the prefix is followed by a new random token in the prefix's
// version key (changed), and a copy is used only while the version key
// still holds the token read before the copy was loaded: each read costs
// one Get of the version key, and a change made through any proxy on the
// same slot is seen by every read that starts after the change returned.
// A copy older than maxAge is loaded again even when the token still
// matches, which bounds how long a change that bypassed the token (a key
// that expired by the slot's TTL, a writer that failed between its write
// and the token) stays unseen. What expires by its own timestamp (records'
// expires_at) is judged at read time, never by the copy's age.
//
// Loads are shared: reads that saw the same token wait for one scan.
type index[T any] struct {
	prefix     string
	versionKey string
	maxAge     time.Duration
	// decode turns an entry into the indexed value; false skips it.
	decode func(*keyvaluev1.Entry) (T, bool)
	now    func() time.Time

	mu    sync.Mutex
	cur   *view[T]
	loads singleflight.Group
}

// view is one loaded copy: the entries in key order, their values as the
// slot holds them and decoded. Shared: never modify a view.
type view[T any] struct {
	token  string
	loaded time.Time
	keys   []string
	raws   [][]byte
	vals   []T
}

// after returns the position of the first key greater than key.
func (v *view[T]) after(key string) int {
	return sort.Search(len(v.keys), func(i int) bool { return v.keys[i] > key })
}

// loadTimeout bounds one load of an index, whoever waits for it.
const loadTimeout = 30 * time.Second

// read returns a copy that reflects every change made before the call.
func (x *index[T]) read(s kvSlot) (*view[T], error) {
	token, err := x.token(s)
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	v := x.cur
	x.mu.Unlock()
	if v != nil && token != "" && v.token == token && x.now().Sub(v.loaded) < x.maxAge {
		return v, nil
	}
	// The load outlives a caller that gives up: others may wait for it.
	ch := x.loads.DoChan(token, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), loadTimeout)
		defer cancel()
		ls := s
		ls.ctx = ctx
		return x.load(ls, token)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*view[T]), nil
	case <-s.ctx.Done():
		return nil, status.FromContextError(s.ctx.Err()).Err()
	}
}

// token reads the version key ("" when there is none).
func (x *index[T]) token(s kvSlot) (string, error) {
	resp, err := s.kv.Get(s.ctx, &keyvaluev1.GetRequest{Key: x.versionKey})
	if status.Code(err) == codes.NotFound {
		return "", nil
	}
	if err != nil {
		return "", slotError("registry", "read the index version", err)
	}
	return string(resp.GetValue()), nil
}

// load scans the prefix into a new copy valid under token. Without a token
// (a new namespace, or a slot that lost its data) it writes one first, so
// a copy always has a token that a later loss of the slot's data changes.
func (x *index[T]) load(s kvSlot, token string) (*view[T], error) {
	if token == "" {
		t, err := x.changed(s)
		if err != nil {
			return nil, err
		}
		token = t
	}
	v := &view[T]{token: token, loaded: x.now()}
	x.mu.Lock()
	prev := x.cur
	x.mu.Unlock()
	type kv struct {
		key string
		raw []byte
		val T
	}
	var all []kv
	cursor := ""
	for {
		resp, err := s.kv.Scan(s.ctx, &keyvaluev1.ScanRequest{Prefix: x.prefix, PageSize: s.maxPage(), Cursor: cursor, IncludeValues: true})
		if err != nil {
			return nil, slotError("registry", "scan "+x.prefix, err)
		}
		for _, e := range resp.GetEntries() {
			// An entry the previous copy holds with the same bytes is not
			// decoded again.
			if prev != nil {
				if i, ok := slices.BinarySearch(prev.keys, e.GetKey()); ok && bytes.Equal(prev.raws[i], e.GetValue()) {
					all = append(all, kv{e.GetKey(), prev.raws[i], prev.vals[i]})
					continue
				}
			}
			if val, ok := x.decode(e); ok {
				all = append(all, kv{e.GetKey(), e.GetValue(), val})
			}
		}
		if cursor = resp.GetNextCursor(); cursor == "" {
			break
		}
	}
	// keyvalue.scan promises every key once, not an order.
	sort.Slice(all, func(i, j int) bool { return all[i].key < all[j].key })
	v.keys, v.raws, v.vals = make([]string, len(all)), make([][]byte, len(all)), make([]T, len(all))
	for i, e := range all {
		v.keys[i], v.raws[i], v.vals[i] = e.key, e.raw, e.val
	}
	x.mu.Lock()
	if x.cur == nil || !x.cur.loaded.After(v.loaded) {
		x.cur = v
	}
	x.mu.Unlock()
	return v, nil
}

// changed writes a new token to the version key: call it after every
// change under the prefix, once the change is in the slot.
func (x *index[T]) changed(s kvSlot) (string, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	if _, err := s.kv.Set(s.ctx, &keyvaluev1.SetRequest{Key: x.versionKey, Value: []byte(token)}); err != nil {
		return "", slotError("registry", "write the index version", err)
	}
	return token, nil
}
