// Command prism-postgres is the PostgreSQL reference plugin as a process.
package main

import (
	"os"

	"github.com/prism-suite/prism/backends/postgres"
	"github.com/prism-suite/prism/backends/sdk"
)

func main() { os.Exit(sdk.Serve(postgres.New())) }
