package mutant

import (
	"context"
	"time"

	"google.golang.org/grpc"
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

func init() { all = append(all, redisMutants...) }

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
