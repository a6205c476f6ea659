// Package mutant holds deliberately broken variants of the reference plugins,
// used to test the suites themselves: every mutant must be caught ("killed")
// by at least one spec. A mutant is a gRPC interceptor wrapped around a real
// plugin, so one defect can be applied to any in-tree plugin without
// touching its code. prism-mutant serves a reference plugin with one mutant.
//
// Add a mutant whenever a spec is added for a new class of defect.
package mutant

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// Mutant is one deliberate defect.
type Mutant struct {
	// Name is the mutant's identifier (prism-mutant --mutant NAME).
	Name string
	// Breaks is the capability whose specs must catch the defect.
	Breaks capability.Name
	// Defect says what is broken, in a sentence.
	Defect string
	// Base is the reference plugin the mutant wraps: "memstore" (also when
	// empty), "nats" (for defects of capabilities memstore does not
	// declare, such as pubsub.durable) or "redis" (defects of a Redis
	// client, redis.go, and those that show only on a backend that can hang).
	Base string
	// unary and stream build fresh interceptors (mutants may keep state);
	// either may be nil.
	unary  func() grpc.UnaryServerInterceptor
	stream func() grpc.StreamServerInterceptor
}

// Unary returns a new unary interceptor that applies the defect, or nil.
func (m Mutant) Unary() grpc.UnaryServerInterceptor {
	if m.unary == nil {
		return nil
	}
	return m.unary()
}

// Stream returns a new stream interceptor that applies the defect, or nil.
func (m Mutant) Stream() grpc.StreamServerInterceptor {
	if m.stream == nil {
		return nil
	}
	return m.stream()
}

// BaseOrDefault returns Base, or "memstore" when it is empty.
func (m Mutant) BaseOrDefault() string {
	if m.Base == "" {
		return "memstore"
	}
	return m.Base
}

// on intercepts one method of the KeyValue service.
func on[Req any](method string, fn func(ctx context.Context, req Req, call func(Req) (any, error)) (any, error)) func() grpc.UnaryServerInterceptor {
	full := "/" + keyvaluev1.KeyValue_ServiceDesc.ServiceName + "/" + method
	return func() grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if info.FullMethod != full {
				return h(ctx, req)
			}
			return fn(ctx, req.(Req), func(r Req) (any, error) { return h(ctx, r) })
		}
	}
}

var all = []Mutant{
	{Name: "lost-delete", Breaks: capability.KeyValueBasic, Defect: "Delete reports success but keeps the key",
		unary: on("Delete", func(_ context.Context, _ *keyvaluev1.DeleteRequest, _ func(*keyvaluev1.DeleteRequest) (any, error)) (any, error) {
			return &keyvaluev1.DeleteResponse{Existed: true}, nil
		})},
	{Name: "delete-existed-wrong", Breaks: capability.KeyValueBasic, Defect: "Delete always reports existed=false",
		unary: on("Delete", func(_ context.Context, req *keyvaluev1.DeleteRequest, call func(*keyvaluev1.DeleteRequest) (any, error)) (any, error) {
			if _, err := call(req); err != nil {
				return nil, err
			}
			return &keyvaluev1.DeleteResponse{Existed: false}, nil
		})},
	{Name: "stale-read", Breaks: capability.KeyValueBasic, Defect: "Get returns the first value ever written to a key", unary: staleRead},
	{Name: "wrong-notfound-code", Breaks: capability.KeyValueBasic, Defect: "Get of a missing key answers Internal instead of NotFound",
		unary: on("Get", func(_ context.Context, req *keyvaluev1.GetRequest, call func(*keyvaluev1.GetRequest) (any, error)) (any, error) {
			resp, err := call(req)
			if status.Code(err) == codes.NotFound {
				return nil, status.Error(codes.Internal, "key lookup failed")
			}
			return resp, err
		})},
	{Name: "exists-always", Breaks: capability.KeyValueBasic, Defect: "Exists answers true for every key",
		unary: on("Exists", func(context.Context, *keyvaluev1.ExistsRequest, func(*keyvaluev1.ExistsRequest) (any, error)) (any, error) {
			return &keyvaluev1.ExistsResponse{Exists: true}, nil
		})},
	{Name: "empty-value-dropped", Breaks: capability.KeyValueBasic, Defect: "Set of an empty value stores nothing",
		unary: on("Set", func(_ context.Context, req *keyvaluev1.SetRequest, call func(*keyvaluev1.SetRequest) (any, error)) (any, error) {
			if len(req.GetValue()) == 0 {
				return &keyvaluev1.SetResponse{}, nil
			}
			return call(req)
		})},
	{Name: "large-value-truncated", Breaks: capability.KeyValueBasic, Defect: "values over 64 KiB are cut to 64 KiB",
		unary: on("Set", func(_ context.Context, req *keyvaluev1.SetRequest, call func(*keyvaluev1.SetRequest) (any, error)) (any, error) {
			if len(req.GetValue()) > 64<<10 {
				req.Value = req.GetValue()[:64<<10]
			}
			return call(req)
		})},
	{Name: "ttl-ignored", Breaks: capability.KeyValueTTL, Defect: "Set drops the TTL, so keys never expire",
		unary: on("Set", func(_ context.Context, req *keyvaluev1.SetRequest, call func(*keyvaluev1.SetRequest) (any, error)) (any, error) {
			if d := req.GetTtl(); d != nil && d.AsDuration() > 0 {
				req.Ttl = nil
			}
			return call(req)
		})},
	{Name: "ttl-factor", Breaks: capability.KeyValueTTL, Defect: "Set keeps keys ten times longer than their TTL",
		unary: on("Set", func(_ context.Context, req *keyvaluev1.SetRequest, call func(*keyvaluev1.SetRequest) (any, error)) (any, error) {
			if d := req.GetTtl(); d != nil && d.AsDuration() > 0 {
				req.Ttl = durationpb.New(10 * d.AsDuration())
			}
			return call(req)
		})},
	{Name: "persist-noop", Breaks: capability.KeyValueTTL, Defect: "Persist reports success but keeps the TTL",
		unary: on("Persist", func(context.Context, *keyvaluev1.PersistRequest, func(*keyvaluev1.PersistRequest) (any, error)) (any, error) {
			return &keyvaluev1.PersistResponse{HadExpiry: true}, nil
		})},
	{Name: "scan-drops-last-page", Breaks: capability.KeyValueScan, Defect: "the last page of a multi-page Scan comes back empty",
		unary: on("Scan", func(_ context.Context, req *keyvaluev1.ScanRequest, call func(*keyvaluev1.ScanRequest) (any, error)) (any, error) {
			resp, err := call(req)
			if err == nil && req.GetCursor() != "" && resp.(*keyvaluev1.ScanResponse).GetNextCursor() == "" {
				return &keyvaluev1.ScanResponse{}, nil
			}
			return resp, err
		})},
	{Name: "scan-prefix-boundary", Breaks: capability.KeyValueScan, Defect: "Scan matches the prefix without its last byte, returning neighbours",
		unary: on("Scan", func(_ context.Context, req *keyvaluev1.ScanRequest, call func(*keyvaluev1.ScanRequest) (any, error)) (any, error) {
			if p := req.GetPrefix(); len(p) > 1 && req.GetCursor() == "" {
				req.Prefix = p[:len(p)-1]
			}
			return call(req)
		})},
	{Name: "scan-duplicates", Breaks: capability.KeyValueScan, Defect: "every Scan page repeats the previous page's last key",
		unary: scanDuplicates},
	{Name: "count-off-by-one", Breaks: capability.KeyValueScan, Defect: "Count answers one more than there are",
		unary: on("Count", func(_ context.Context, req *keyvaluev1.CountRequest, call func(*keyvaluev1.CountRequest) (any, error)) (any, error) {
			resp, err := call(req)
			if err != nil {
				return nil, err
			}
			return &keyvaluev1.CountResponse{Count: resp.(*keyvaluev1.CountResponse).GetCount() + 1}, nil
		})},
	{Name: "batch-partial-write", Breaks: capability.KeyValueBatch, Defect: "BatchSet writes only the first half and reports success",
		unary: on("BatchSet", func(_ context.Context, req *keyvaluev1.BatchSetRequest, call func(*keyvaluev1.BatchSetRequest) (any, error)) (any, error) {
			req.Entries = req.GetEntries()[:len(req.GetEntries())/2]
			return call(req)
		})},
	{Name: "batch-get-unordered", Breaks: capability.KeyValueBatch, Defect: "BatchGet returns results sorted by key instead of in request order",
		unary: on("BatchGet", func(_ context.Context, req *keyvaluev1.BatchGetRequest, call func(*keyvaluev1.BatchGetRequest) (any, error)) (any, error) {
			resp, err := call(req)
			if err != nil {
				return nil, err
			}
			rs := resp.(*keyvaluev1.BatchGetResponse).GetResults()
			sort.Slice(rs, func(i, j int) bool { return rs[i].GetKey() < rs[j].GetKey() })
			return resp, nil
		})},
}

// staleRead remembers the first value written to each key and serves it.
func staleRead() grpc.UnaryServerInterceptor {
	var mu sync.Mutex
	first := map[string][]byte{}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		switch r := req.(type) {
		case *keyvaluev1.SetRequest:
			mu.Lock()
			if _, ok := first[r.GetKey()]; !ok {
				first[r.GetKey()] = r.GetValue()
			}
			mu.Unlock()
		case *keyvaluev1.GetRequest:
			resp, err := h(ctx, req)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			defer mu.Unlock()
			if v, ok := first[r.GetKey()]; ok {
				return &keyvaluev1.GetResponse{Value: v}, nil
			}
			return resp, nil
		}
		return h(ctx, req)
	}
}

// scanDuplicates prepends the last key of the previous page to each page.
func scanDuplicates() grpc.UnaryServerInterceptor {
	var mu sync.Mutex
	last := map[string]*keyvaluev1.Entry{} // by cursor handed out
	return on("Scan", func(_ context.Context, req *keyvaluev1.ScanRequest, call func(*keyvaluev1.ScanRequest) (any, error)) (any, error) {
		resp, err := call(req)
		if err != nil {
			return nil, err
		}
		sr := resp.(*keyvaluev1.ScanResponse)
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[req.GetCursor()]; ok && req.GetCursor() != "" {
			sr.Entries = append([]*keyvaluev1.Entry{prev}, sr.GetEntries()...)
			if len(sr.Entries) > int(req.GetPageSize()) && req.GetPageSize() > 0 {
				sr.Entries = sr.Entries[:req.GetPageSize()]
			}
		}
		if n := len(sr.GetEntries()); n > 0 && sr.GetNextCursor() != "" {
			last[sr.GetNextCursor()] = sr.GetEntries()[n-1]
		}
		return sr, nil
	})()
}

// All returns every mutant in a stable order.
func All() []Mutant { return append([]Mutant(nil), all...) }

// Lookup returns the mutant or variant called name.
func Lookup(name string) (Mutant, error) {
	for _, m := range append(append(append(All(), variants...), credentialMutants...), robustnessMutants...) {
		if m.Name == name {
			return m, nil
		}
	}
	return Mutant{}, fmt.Errorf("lookup mutant: no mutant called %q", name)
}
