// Command prism-dev-idp is a small OpenID Provider for local runs and tests;
// see package reference/devidp and `prism-dev-idp --help`.
package main

import (
	"os"

	"github.com/prism-suite/prism/reference/devidp"
)

func main() { os.Exit(devidp.Main(os.Args[1:], os.Stderr)) }
