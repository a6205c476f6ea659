// Command prism-memstore is the memstore reference plugin as a process.
package main

import (
	"os"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
)

func main() { os.Exit(sdk.Serve(memstore.New())) }
