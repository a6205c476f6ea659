// Command prism-proxy is Prism's reference proxy; see package
// reference/proxy and `prism-proxy --help`. It links the reference drivers
// (memstore, redis, nats) as builtins: a plugin block may say
// "builtin: redis" instead of naming a plugin binary.
package main

import (
	"os"

	"github.com/prism-suite/prism/reference/builtins"
	"github.com/prism-suite/prism/reference/proxy"
)

func main() { os.Exit(proxy.Main(os.Args[1:], os.Stderr, builtins.Options()...)) }
