// Package pythonmemstore holds the Python plugin's protocol layer and
// generated code for Go: `prism-accept new-plugin --lang python` writes them
// into a new plugin from here, so they are maintained (and certified) once,
// with this plugin. The plugin itself is Python (plugin.py).
package pythonmemstore

import "embed"

// Kit is prismkit/ (the protocol layer) and gen/ (protoc's code), with
// their __init__.py files (hence all:); a reader skips __pycache__, which a
// run of the plugin leaves in a checkout.
//
//go:embed all:prismkit all:gen
var Kit embed.FS
