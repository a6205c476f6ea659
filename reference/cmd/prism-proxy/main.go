// Command prism-proxy is Prism's reference proxy; see package
// reference/proxy and `prism-proxy --help`.
package main

import (
	"os"

	"github.com/prism-suite/prism/reference/proxy"
)

func main() { os.Exit(proxy.Main(os.Args[1:], os.Stderr)) }
