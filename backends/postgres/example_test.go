package postgres_test

import (
	"context"
	"fmt"
	"log"

	"github.com/prism-suite/prism/backends/postgres"
	"github.com/prism-suite/prism/backends/sdk"
)

// Example drives the plugin in-process, as a host would after Initialize.
// It needs a PostgreSQL server, so it is compiled but not run by go test.
func Example() {
	ctx := context.Background()
	d := postgres.New()
	err := d.Init(ctx, sdk.Config{
		Values:      map[string]any{"address": "127.0.0.1:5432", "schema": "orders"},
		Credentials: map[string]string{"username": "prism-orders", "password": "from your secret store"},
		Namespace:   "orders",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close(ctx)

	for _, k := range []string{"user/2", "user/1", "order/9"} {
		_ = d.Set(ctx, k, []byte("v-"+k))
	}
	page, next, _ := d.Scan(ctx, "user/", "", 10, true) // in byte order, in table orders.prism_kv_orders
	for _, e := range page {
		fmt.Printf("%s=%s\n", e.Key, e.Value)
	}
	fmt.Println("more:", next != "")
}
