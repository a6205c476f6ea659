// Command prism-nats is the NATS reference plugin as a process.
package main

import (
	"os"

	"github.com/prism-suite/prism/backends/nats"
	"github.com/prism-suite/prism/backends/sdk"
)

func main() { os.Exit(sdk.Serve(nats.New())) }
