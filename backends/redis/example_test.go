package redis_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
)

// Example drives the plugin in-process, as a host would after Initialize,
// against an embedded Redis.
func Example() {
	srv, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	ctx := context.Background()
	d := redis.New()
	err = d.Init(ctx, sdk.Config{Values: map[string]any{
		"address":    srv.Addr(),
		"key_prefix": "tenant-a:",
	}})
	if err != nil {
		panic(err)
	}
	defer d.Close(ctx)

	for _, k := range []string{"user/2", "user/1", "order/9"} {
		_ = d.Set(ctx, k, []byte("v-"+k))
	}
	page, next, _ := d.Scan(ctx, "user/", "", 10, true)
	for _, e := range page {
		fmt.Printf("%s=%s\n", e.Key, e.Value)
	}
	fmt.Printf("more: %v; in redis: %v\n", next != "", srv.Keys())
	// Output:
	// user/1=v-user/1
	// user/2=v-user/2
	// more: false; in redis: [tenant-a:order/9 tenant-a:user/1 tenant-a:user/2]
}
