package nats_test

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/prism-suite/prism/backends/nats"
	"github.com/prism-suite/prism/backends/sdk"
)

// printer is a Sink that prints what it receives.
type printer chan sdk.Message

func (p printer) Deliver(m sdk.Message) { p <- m }
func (p printer) Fail(err error)        { fmt.Println("failed:", err) }

// Example drives the plugin in-process, as the SDK would after Initialize,
// against an embedded nats-server with JetStream.
func Example() {
	dir, _ := os.MkdirTemp("", "prism-nats-example-")
	defer os.RemoveAll(dir)
	srv, _ := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true, JetStream: true, StoreDir: dir})
	go srv.Start()
	srv.ReadyForConnections(5e9)
	defer srv.Shutdown()

	ctx := context.Background()
	d := nats.New()
	if err := d.Init(ctx, sdk.Config{Values: map[string]any{"url": srv.ClientURL()}}); err != nil {
		panic(err)
	}
	defer d.Close(ctx)

	got := make(printer, 1)
	sub, _ := d.Subscribe(ctx, "orders.*", got) // a literal topic: "*" is no wildcard
	defer sub.Unsubscribe()
	_, _ = d.Publish(ctx, sdk.Message{Topic: "orders.eu", Payload: []byte("not for orders.*")})
	_, _ = d.Publish(ctx, sdk.Message{Topic: "orders.*", Payload: []byte("hello"), Metadata: map[string]string{"Lang": "en"}})
	m := <-got
	fmt.Printf("%s %s %s\n", m.Topic, m.Payload, m.Metadata["Lang"])
	fmt.Println(sdk.Capabilities(d))
	// Output:
	// orders.* hello en
	// [pubsub.basic pubsub.ordered pubsub.queue pubsub.durable auth.backend-credentials auth.rotation]
}
