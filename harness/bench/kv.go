package bench

import (
	"context"
	"fmt"
	"time"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// ValueSize is the value size of the KeyValue series.
const ValueSize = 128

// keySpace is how many distinct keys the Get series reads.
const keySpace = 1000

// KeyValue measures Get and Set through a KeyValue client at concurrency
// conc, total ops each, bounded by d per series. prefix keeps its keys apart.
func KeyValue(ctx context.Context, name, prefix string, kv keyvaluev1.KeyValueClient, conc, total int, d time.Duration) (get, set Result) {
	value := make([]byte, ValueSize)
	key := func(i int) string { return fmt.Sprintf("%s%04d", prefix, (i%keySpace+keySpace)%keySpace) }
	set = Load(ctx, name+" Set", conc, total, d, func(ctx context.Context, _, i int) error {
		_, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: key(i), Value: value})
		return err
	})
	get = Load(ctx, name+" Get", conc, total, d, func(ctx context.Context, _, i int) error {
		_, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: key(i)})
		return err
	})
	return get, set
}
