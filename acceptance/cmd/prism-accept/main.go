// Command prism-accept certifies a Prism plugin binary; see `prism-accept --help`.
package main

import (
	"os"

	"github.com/prism-suite/prism/acceptance"
)

func main() { os.Exit(acceptance.Main(os.Args[1:], os.Stdout, os.Stderr)) }
