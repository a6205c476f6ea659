// Command prism-redis is the Redis reference plugin as a process.
package main

import (
	"os"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
)

func main() { os.Exit(sdk.Serve(redis.New())) }
