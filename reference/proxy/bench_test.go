package proxy_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"

	plugin "github.com/prism-suite/prism/proto/launch"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/proto/tracing"
	"github.com/prism-suite/prism/reference/proxy"
)

// BenchmarkGetViaProxy measures KeyValue Get through an in-process proxy to
// a memstore process, for profiling the forwarding path:
//
//	go test -run '^$' -bench GetViaProxy -cpuprofile cpu.out ./reference/proxy/
//	go tool pprof -top -focus 'proxy\.' proxy.test cpu.out
func BenchmarkGetViaProxy(b *testing.B) {
	cfg := testConfig(kvNamespace("a", ""))
	cfg.LogLevel = "warn"
	p, err := proxy.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	conn := dial(b, p.Addr())
	defer conn.Close()
	kv := keyvaluev1.NewKeyValueClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), proxy.NamespaceKey, "a")
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: make([]byte, 128)}); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGetSequential is one client calling Get in a loop through the
// proxy: the latency of one proxied call.
func BenchmarkGetSequential(b *testing.B) {
	cfg := testConfig(kvNamespace("a", ""))
	cfg.LogLevel = "warn"
	p, err := proxy.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	conn := dial(b, p.Addr())
	defer conn.Close()
	kv := keyvaluev1.NewKeyValueClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), proxy.NamespaceKey, "a")
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: make([]byte, 128)}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetSequentialDirect is BenchmarkGetSequential without the proxy:
// the same client straight to the memstore process.
func BenchmarkGetSequentialDirect(b *testing.B) {
	p, err := plugin.Launch(context.Background(), memstore, plugin.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop(context.Background())
	if _, err := p.Setup(context.Background(), &lifecyclev1.InitializeRequest{}); err != nil {
		b.Fatal(err)
	}
	kv := keyvaluev1.NewKeyValueClient(p.Conn)
	ctx := context.Background()
	if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: make([]byte, 128)}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForwardTracing is BenchmarkGetSequential with tracing off (the
// default: no stats handler, no span, no injection) and on (otelgrpc's
// server handler, the forward span and its traceparent, spans handed to an
// exporter that drops them); compare allocs/op and ns/op:
//
//	go test -run '^$' -bench ForwardTracing -benchmem ./reference/proxy/
func BenchmarkForwardTracing(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		var opts []proxy.Option
		if on {
			name = "on"
			opts = append(opts, proxy.WithTracing(tracing.NewWithExporter(tracetest.NewNoopExporter(), "bench")))
		}
		b.Run(name, func(b *testing.B) {
			cfg := testConfig(kvNamespace("a", ""))
			cfg.LogLevel = "warn"
			p, err := proxy.New(cfg, opts...)
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			conn := dial(b, p.Addr())
			defer conn.Close()
			kv := keyvaluev1.NewKeyValueClient(conn)
			ctx := metadata.AppendToOutgoingContext(context.Background(), proxy.NamespaceKey, "a")
			if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: make([]byte, 128)}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
