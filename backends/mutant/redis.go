package mutant

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// redisMutants wrap the redis plugin (Base "redis"; prism-accept runs them
// against an embedded Redis): the defects of a Redis client written with
// the second-resolution commands.
var redisMutants = []Mutant{
	{Name: "redis-expire-seconds", Base: "redis", Breaks: capability.KeyValueTTL,
		Defect: "TTLs go to Redis in whole seconds, rounded up (SET EX, EXPIRE instead of PX, PEXPIRE): a 400 ms TTL lasts 1 s",
		unary:  wholeSeconds},
}

// credentialMutants break what a plugin does when the backend stops
// accepting its credentials mid-run. Their specs need prism-accept --auth
// (backend users), so they are not in All (TestMutantsAreKilled runs
// without it) but in CredentialMutants, which the acceptance tests run with
// --auth.
var credentialMutants = []Mutant{
	{Name: "stale-read-when-refused", Base: "redis", Breaks: capability.AuthBackendCredentials,
		Defect: "Get answers the last value it read when the backend refuses the plugin (a read cache kept \"for resilience\")",
		unary:  staleWhenRefused},
}

func init() { all = append(all, redisMutants...) }

// CredentialMutants returns the mutants of auth.backend-credentials, which
// run with prism-accept --auth, in a stable order.
func CredentialMutants() []Mutant { return append([]Mutant(nil), credentialMutants...) }

// staleWhenRefused remembers the last value Get returned for each key and
// serves it, as a success, when the backend refuses or cannot be reached.
func staleWhenRefused() grpc.UnaryServerInterceptor {
	var mu sync.Mutex
	last := map[string][]byte{}
	return on("Get", func(_ context.Context, req *keyvaluev1.GetRequest, call func(*keyvaluev1.GetRequest) (any, error)) (any, error) {
		resp, err := call(req)
		mu.Lock()
		defer mu.Unlock()
		switch status.Code(err) {
		case codes.OK:
			last[req.GetKey()] = resp.(*keyvaluev1.GetResponse).GetValue()
		case codes.Unauthenticated, codes.PermissionDenied, codes.Unavailable:
			if v, ok := last[req.GetKey()]; ok {
				return &keyvaluev1.GetResponse{Value: v}, nil
			}
		}
		return resp, err
	})()
}

// wholeSeconds rounds the TTL of Set, BatchSet and Expire up to whole
// seconds, as a plugin sending SET key value EX n and EXPIRE key n does.
func wholeSeconds() grpc.UnaryServerInterceptor {
	up := func(d *durationpb.Duration) *durationpb.Duration {
		if d == nil || d.AsDuration() <= 0 {
			return d
		}
		s := (d.AsDuration() + time.Second - 1) / time.Second
		return durationpb.New(s * time.Second)
	}
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		switch r := req.(type) {
		case *keyvaluev1.SetRequest:
			r.Ttl = up(r.GetTtl())
		case *keyvaluev1.BatchSetRequest:
			r.Ttl = up(r.GetTtl())
		case *keyvaluev1.ExpireRequest:
			r.Ttl = up(r.GetTtl())
		}
		return h(ctx, req)
	}
}
