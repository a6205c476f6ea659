package registry_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/registry"
)

// BenchmarkEnumerate1000 enumerates 1 000 identities with a filter over an
// in-process memstore slot, through gRPC, with and without their metadata
// (task bench has the figures through the proxy).
func BenchmarkEnumerate1000(b *testing.B) {
	slot := startMemstore(b)
	c, err := registry.New("bench", registry.Config{}, slot, slot, registry.WithLogger(quiet), registry.WithMutant(""))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rc := serve(b, c)
	ctx := context.Background()
	for i := range 1000 {
		_, err := c.Register(ctx, &registryv1.RegisterRequest{Identity: fmt.Sprintf("id-%04d", i), Ttl: durationpb.New(time.Hour),
			Metadata: map[string]*registryv1.Value{"group": str("enum"), "floor": num(int64(i % 10))}})
		if err != nil {
			b.Fatal(err)
		}
	}
	f := and(cond("group", registryv1.Condition_OP_EQ, str("enum")), cond("floor", registryv1.Condition_OP_GTE, num(0)))
	// The coordinator alone, called in-process: the slot reads and the
	// filter, without the client's decoding of 1 000 identities.
	b.Run("coordinator", func(b *testing.B) {
		for b.Loop() {
			resp, err := c.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: f, PageSize: 1000})
			if err != nil || len(resp.GetIdentities()) != 1000 {
				b.Fatal(err, len(resp.GetIdentities()))
			}
		}
	})
	for _, md := range []bool{false, true} {
		b.Run(fmt.Sprintf("metadata=%v", md), func(b *testing.B) {
			for b.Loop() {
				resp, err := rc.Enumerate(ctx, &registryv1.EnumerateRequest{Filter: f, PageSize: 1000, IncludeMetadata: md})
				if err != nil || len(resp.GetIdentities()) != 1000 {
					b.Fatal(err, len(resp.GetIdentities()))
				}
			}
		})
	}
}

// BenchmarkMulticast100 multicasts to 100 open inboxes over in-process
// memstore slots and waits until every receiver has the message.
func BenchmarkMulticast100(b *testing.B) { benchmarkMulticast(b, 100) }

// BenchmarkMulticast10000 is BenchmarkMulticast100 with 10 000 inboxes.
func BenchmarkMulticast10000(b *testing.B) { benchmarkMulticast(b, 10_000) }

func benchmarkMulticast(b *testing.B, n int) {
	slot := startMemstore(b)
	c, err := registry.New("bench", registry.Config{PresenceTTL: time.Minute}, slot, slot, registry.WithLogger(quiet), registry.WithMutant(""))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rc := serve(b, c)
	ctx := context.Background()
	for i := range n {
		_, err := c.Register(ctx, &registryv1.RegisterRequest{Identity: fmt.Sprintf("id-%05d", i), Ttl: durationpb.New(time.Hour),
			Metadata: map[string]*registryv1.Value{"group": str("g")}})
		if err != nil {
			b.Fatal(err)
		}
	}
	var got atomic.Int64
	done := make(chan struct{}, 1)
	for i := range n {
		s, err := rc.Receive(ctx)
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Send(&registryv1.ReceiveRequest{Request: &registryv1.ReceiveRequest_Open_{Open: &registryv1.ReceiveRequest_Open{Identity: fmt.Sprintf("id-%05d", i)}}})
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				if _, err := s.Recv(); err != nil {
					return
				}
				if got.Add(1)%int64(n) == 0 {
					done <- struct{}{}
				}
			}
		}()
	}
	f := cond("group", registryv1.Condition_OP_EQ, str("g"))
	b.ResetTimer()
	for b.Loop() {
		resp, err := rc.Multicast(ctx, &registryv1.MulticastRequest{Filter: f, Payload: []byte("x")})
		if err != nil || resp.GetDeliveredCount() != int64(n) {
			b.Fatal(err, resp.GetDeliveredCount())
		}
		<-done
	}
}
