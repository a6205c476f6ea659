// Command prismctl talks to a Prism proxy; see package reference/ctl and
// `prismctl --help`.
package main

import (
	"os"

	"github.com/prism-suite/prism/reference/ctl"
)

func main() { os.Exit(ctl.Main(os.Args[1:], os.Stdout, os.Stderr)) }
