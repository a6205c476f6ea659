package nats_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prism-suite/prism/backends/sdk"
)

// counter is a Sink that counts.
type counter struct{ n atomic.Int64 }

func (c *counter) Deliver(sdk.Message) { c.n.Add(1) }
func (c *counter) Fail(error)          {}

// BenchmarkPublishBatch publishes batches of 100 messages of 128 bytes to a
// topic one core subscription receives, in-process against an embedded
// server; profile it with -cpuprofile.
func BenchmarkPublishBatch(b *testing.B) {
	srv := startServer(b, nil)
	d := connect(b, map[string]any{"url": srv.url()}, nil)
	ctx := ctxT(b, time.Minute)
	c := &counter{}
	sub, err := d.Subscribe(ctx, "bench", c)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	batch := make([]sdk.Message, 100)
	for i := range batch {
		batch[i] = sdk.Message{Topic: "bench", Payload: make([]byte, 128)}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := d.PublishBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "msgs/s")
}
