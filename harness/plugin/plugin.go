// Package plugin is the harness's handle on plugin processes. Launching and
// stopping one is the protocol's host side, which lives in proto/launch (the
// reference proxy uses the same launcher); this package re-exports it for the
// harness and the suites, and adds what only tests need: connecting to a
// plugin process some other host launched ([DialPID]).
package plugin

import (
	"context"
	"slices"

	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/launch"
)

// MaxMessageBytes is the largest gRPC message the host sends or accepts.
const MaxMessageBytes = launch.MaxMessageBytes

// MaxHandshakeBytes bounds the handshake line; a longer line is refused
// without reading the rest of it.
const MaxHandshakeBytes = launch.MaxHandshakeBytes

// Options configure Launch (see [launch.Options]).
type Options = launch.Options

// Process is a running plugin (see [launch.Process]).
type Process = launch.Process

// DefaultOptions returns the launcher's defaults (see [launch.DefaultOptions]).
func DefaultOptions() Options { return launch.DefaultOptions() }

// Launch starts binary and returns once the plugin answers gRPC health with
// SERVING (see [launch.Launch]). The connection's calls are traced when
// the harness traces (target.SetTracing).
func Launch(ctx context.Context, binary string, opts Options) (*Process, error) {
	opts.DialOptions = append(slices.Clip(opts.DialOptions), target.DialOptions()...)
	return launch.Launch(ctx, binary, opts)
}

// FileSHA256 returns the hex sha256 of a file (the plugin binary digest in reports).
func FileSHA256(path string) (string, error) { return launch.FileSHA256(path) }
