package mutant

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// hugeTTL is where the huge-TTL mutants start to misbehave: far beyond any
// TTL the suite uses for keys it lets expire.
const hugeTTL = 100 * 365 * 24 * time.Hour

// expiryMutants break how expiry is seen through operations other than Get,
// or how huge TTLs are stored: the defects of a plugin that checks a key's
// deadline in Get only, or overflows converting a TTL.
var expiryMutants = []Mutant{
	{Name: "expired-delete-existed", Breaks: capability.KeyValueTTL, Defect: "Delete reports existed=true for a key whose TTL has ended",
		unary: withGhosts(func(g *ghosts, ctx context.Context, req any, h grpc.UnaryHandler) (any, bool, error) {
			r, ok := req.(*keyvaluev1.DeleteRequest)
			if !ok || !g.expired(r.GetKey()) {
				return nil, false, nil
			}
			if _, err := h(ctx, req); err != nil {
				return nil, true, err
			}
			return &keyvaluev1.DeleteResponse{Existed: true}, true, nil
		})},
	{Name: "expired-exists", Breaks: capability.KeyValueTTL, Defect: "Exists answers true for a key whose TTL has ended",
		unary: withGhosts(func(g *ghosts, _ context.Context, req any, _ grpc.UnaryHandler) (any, bool, error) {
			if r, ok := req.(*keyvaluev1.ExistsRequest); ok && g.expired(r.GetKey()) {
				return &keyvaluev1.ExistsResponse{Exists: true}, true, nil
			}
			return nil, false, nil
		})},
	{Name: "expired-getttl", Breaks: capability.KeyValueTTL, Defect: "GetTTL answers a zero TTL instead of NotFound for a key whose TTL has ended",
		unary: withGhosts(func(g *ghosts, _ context.Context, req any, _ grpc.UnaryHandler) (any, bool, error) {
			if r, ok := req.(*keyvaluev1.GetTTLRequest); ok && g.expired(r.GetKey()) {
				return &keyvaluev1.GetTTLResponse{HasExpiry: true, Ttl: durationpb.New(0)}, true, nil
			}
			return nil, false, nil
		})},
	{Name: "expired-expire-ok", Breaks: capability.KeyValueTTL, Defect: "Expire of a key whose TTL has ended succeeds instead of answering NotFound",
		unary: withGhosts(func(g *ghosts, _ context.Context, req any, _ grpc.UnaryHandler) (any, bool, error) {
			if r, ok := req.(*keyvaluev1.ExpireRequest); ok && g.expired(r.GetKey()) {
				return &keyvaluev1.ExpireResponse{}, true, nil
			}
			return nil, false, nil
		})},
	{Name: "expired-persist-ok", Breaks: capability.KeyValueTTL, Defect: "Persist of a key whose TTL has ended reports had_expiry=true instead of NotFound",
		unary: withGhosts(func(g *ghosts, _ context.Context, req any, _ grpc.UnaryHandler) (any, bool, error) {
			if r, ok := req.(*keyvaluev1.PersistRequest); ok && g.expired(r.GetKey()) {
				return &keyvaluev1.PersistResponse{HadExpiry: true}, true, nil
			}
			return nil, false, nil
		})},
	{Name: "expired-in-scan", Breaks: capability.KeyValueTTL, Defect: "Scan returns keys whose TTL has ended on its last page",
		unary: withGhosts(func(g *ghosts, ctx context.Context, req any, h grpc.UnaryHandler) (any, bool, error) {
			r, ok := req.(*keyvaluev1.ScanRequest)
			if !ok {
				return nil, false, nil
			}
			resp, err := h(ctx, req)
			if err != nil {
				return nil, true, err
			}
			sr := resp.(*keyvaluev1.ScanResponse)
			if sr.GetNextCursor() == "" {
				for _, k := range g.expiredUnder(r.GetPrefix()) {
					e := &keyvaluev1.Entry{Key: k}
					if r.GetIncludeValues() {
						e.Value = g.value(k)
					}
					sr.Entries = append(sr.Entries, e)
				}
			}
			return sr, true, nil
		})},
	{Name: "expired-in-count", Breaks: capability.KeyValueTTL, Defect: "Count includes keys whose TTL has ended",
		unary: withGhosts(func(g *ghosts, ctx context.Context, req any, h grpc.UnaryHandler) (any, bool, error) {
			r, ok := req.(*keyvaluev1.CountRequest)
			if !ok {
				return nil, false, nil
			}
			resp, err := h(ctx, req)
			if err != nil {
				return nil, true, err
			}
			n := resp.(*keyvaluev1.CountResponse).GetCount() + int64(len(g.expiredUnder(r.GetPrefix())))
			return &keyvaluev1.CountResponse{Count: n}, true, nil
		})},
	{Name: "expired-batch-delete-existed", Breaks: capability.KeyValueTTL, Defect: "BatchDelete reports existed=true for keys whose TTL has ended",
		unary: withGhosts(func(g *ghosts, ctx context.Context, req any, h grpc.UnaryHandler) (any, bool, error) {
			r, ok := req.(*keyvaluev1.BatchDeleteRequest)
			if !ok {
				return nil, false, nil
			}
			stale := make([]bool, len(r.GetKeys()))
			for i, k := range r.GetKeys() {
				stale[i] = g.expired(k)
			}
			resp, err := h(ctx, req)
			if err != nil {
				return nil, true, err
			}
			br := resp.(*keyvaluev1.BatchDeleteResponse)
			for i := range br.GetExisted() {
				br.Existed[i] = br.Existed[i] || stale[i]
			}
			return br, true, nil
		})},
	{Name: "batchset-keeps-ttl", Breaks: capability.KeyValueTTL, Defect: "BatchSet without a TTL keeps an overwritten key's old TTL",
		unary: withGhosts(func(g *ghosts, ctx context.Context, req any, h grpc.UnaryHandler) (any, bool, error) {
			r, ok := req.(*keyvaluev1.BatchSetRequest)
			if !ok || r.GetTtl() != nil {
				return nil, false, nil
			}
			var rest []*keyvaluev1.Entry
			for _, e := range r.GetEntries() {
				left, live := g.remaining(e.GetKey())
				if !live {
					rest = append(rest, e)
					continue
				}
				if _, err := h(ctx, &keyvaluev1.BatchSetRequest{Entries: []*keyvaluev1.Entry{e}, Ttl: durationpb.New(left)}); err != nil {
					return nil, true, err
				}
			}
			if len(rest) == 0 {
				return &keyvaluev1.BatchSetResponse{}, true, nil
			}
			resp, err := h(ctx, &keyvaluev1.BatchSetRequest{Entries: rest})
			return resp, true, err
		})},
	{Name: "ttl-early-expiry", Breaks: capability.KeyValueTTL, Defect: "Get and Exists treat a key as gone once 60 % of its TTL has passed, while GetTTL still counts down",
		unary: withGhosts(func(g *ghosts, _ context.Context, req any, _ grpc.UnaryHandler) (any, bool, error) {
			switch r := req.(type) {
			case *keyvaluev1.GetRequest:
				if g.pastFraction(r.GetKey(), 0.6) {
					return nil, true, status.Errorf(codes.NotFound, "get %q: not found", r.GetKey())
				}
			case *keyvaluev1.ExistsRequest:
				if g.pastFraction(r.GetKey(), 0.6) {
					return &keyvaluev1.ExistsResponse{}, true, nil
				}
			}
			return nil, false, nil
		})},
	{Name: "getttl-short", Breaks: capability.KeyValueTTL, Defect: "GetTTL reports 300 ms less than is left (counting from the wrong start)",
		unary: on("GetTTL", func(_ context.Context, req *keyvaluev1.GetTTLRequest, call func(*keyvaluev1.GetTTLRequest) (any, error)) (any, error) {
			resp, err := call(req)
			if err != nil {
				return nil, err
			}
			r := resp.(*keyvaluev1.GetTTLResponse)
			if r.GetHasExpiry() && r.GetTtl().AsDuration() > 300*time.Millisecond {
				r.Ttl = durationpb.New(r.GetTtl().AsDuration() - 300*time.Millisecond)
			}
			return r, nil
		})},
	{Name: "huge-ttl-set-no-expiry", Breaks: capability.KeyValueTTL, Defect: "Set with a TTL of over 100 years stores the key without expiry (overflow)",
		unary: on("Set", func(_ context.Context, req *keyvaluev1.SetRequest, call func(*keyvaluev1.SetRequest) (any, error)) (any, error) {
			if req.GetTtl() != nil && req.GetTtl().AsDuration() >= hugeTTL {
				req.Ttl = nil
			}
			return call(req)
		})},
	{Name: "huge-ttl-batchset-no-expiry", Breaks: capability.KeyValueTTL, Defect: "BatchSet with a TTL of over 100 years stores the keys without expiry (overflow)",
		unary: on("BatchSet", func(_ context.Context, req *keyvaluev1.BatchSetRequest, call func(*keyvaluev1.BatchSetRequest) (any, error)) (any, error) {
			if req.GetTtl() != nil && req.GetTtl().AsDuration() >= hugeTTL {
				req.Ttl = nil
			}
			return call(req)
		})},
	{Name: "huge-ttl-expire-deletes", Breaks: capability.KeyValueTTL, Defect: "Expire with a TTL of over 100 years makes the key vanish at once (overflow to a past deadline)",
		unary: on("Expire", func(_ context.Context, req *keyvaluev1.ExpireRequest, call func(*keyvaluev1.ExpireRequest) (any, error)) (any, error) {
			if req.GetTtl() != nil && req.GetTtl().AsDuration() >= hugeTTL {
				req.Ttl = durationpb.New(time.Millisecond)
			}
			return call(req)
		})},
}

func init() { all = append(all, expiryMutants...) }

// ghosts remembers the keys written with a TTL and their deadlines, so a
// mutant can see a key after its TTL ended, as a plugin that checks
// deadlines only in Get sees a key its sweeper has not reclaimed yet.
type ghosts struct {
	mu sync.Mutex
	m  map[string]ghost
}

type ghost struct {
	value []byte
	set   time.Time
	until time.Time
}

// withGhosts builds an interceptor that lets defect answer a call first
// (handled=true), else passes the call on; successful writes update the
// ghosts either way.
func withGhosts(defect func(g *ghosts, ctx context.Context, req any, h grpc.UnaryHandler) (resp any, handled bool, err error)) func() grpc.UnaryServerInterceptor {
	return func() grpc.UnaryServerInterceptor {
		g := &ghosts{m: map[string]ghost{}}
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, handled, err := defect(g, ctx, req, h)
			if !handled {
				resp, err = h(ctx, req)
			}
			if err == nil {
				g.observe(req)
			}
			return resp, err
		}
	}
}

// observe records what a successful call did to the keys' TTLs.
func (g *ghosts) observe(req any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	put := func(k string, v []byte, ttl *durationpb.Duration) {
		if ttl == nil {
			delete(g.m, k)
			return
		}
		g.m[k] = ghost{value: v, set: now, until: now.Add(ttl.AsDuration())}
	}
	switch r := req.(type) {
	case *keyvaluev1.SetRequest:
		put(r.GetKey(), r.GetValue(), r.GetTtl())
	case *keyvaluev1.BatchSetRequest:
		for _, e := range r.GetEntries() {
			put(e.GetKey(), e.GetValue(), r.GetTtl())
		}
	case *keyvaluev1.ExpireRequest:
		if old, ok := g.m[r.GetKey()]; ok {
			g.m[r.GetKey()] = ghost{value: old.value, set: now, until: now.Add(r.GetTtl().AsDuration())}
		}
	case *keyvaluev1.DeleteRequest:
		delete(g.m, r.GetKey())
	case *keyvaluev1.PersistRequest:
		delete(g.m, r.GetKey())
	case *keyvaluev1.BatchDeleteRequest:
		for _, k := range r.GetKeys() {
			delete(g.m, k)
		}
	}
}

// expired reports whether key was written with a TTL that has ended.
func (g *ghosts) expired(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	x, ok := g.m[key]
	return ok && !time.Now().Before(x.until)
}

// remaining returns how long key's TTL has left, and whether it has a live one.
func (g *ghosts) remaining(key string) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	x, ok := g.m[key]
	if !ok {
		return 0, false
	}
	left := time.Until(x.until)
	return left, left >= time.Millisecond
}

// pastFraction reports whether more than f of key's TTL has passed.
func (g *ghosts) pastFraction(key string, f float64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	x, ok := g.m[key]
	if !ok {
		return false
	}
	life := x.until.Sub(x.set)
	return time.Since(x.set) > time.Duration(f*float64(life))
}

// value returns the value key was written with.
func (g *ghosts) value(key string) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[key].value
}

// expiredUnder returns the keys under prefix whose TTL has ended, sorted.
func (g *ghosts) expiredUnder(prefix string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	var out []string
	for k, x := range g.m {
		if strings.HasPrefix(k, prefix) && !now.Before(x.until) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
