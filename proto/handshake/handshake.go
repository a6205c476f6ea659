// Package handshake is the one definition of the line a Prism plugin prints to
// stdout when it is ready for its host to connect:
//
//	PRISM-PLUGIN|<protocol version>|<network>|<address>
//
// for example "PRISM-PLUGIN|1|unix|/tmp/prism-123/plugin.sock". The plugin prints
// exactly this one line to stdout and nothing else, ever; logs go to stderr.
package handshake

import (
	"fmt"
	"strconv"
	"strings"
)

// Prefix starts every handshake line.
const Prefix = "PRISM-PLUGIN"

// ProtocolVersion is the plugin protocol version this module speaks.
const ProtocolVersion = 1

// The environment variables a host sets for a plugin process.
const (
	// EnvMagic must hold MagicValue; a plugin started without it was run by
	// hand and says how to run it instead.
	EnvMagic = "PRISM_PLUGIN_MAGIC"
	// MagicValue is the value of EnvMagic.
	MagicValue = "d4c1e1b0-prism-plugin"
	// EnvNetwork asks for "unix" (default) or "tcp".
	EnvNetwork = "PRISM_PLUGIN_NETWORK"
	// EnvSocketDir is where a unix socket is created (default: a new temp dir).
	EnvSocketDir = "PRISM_PLUGIN_SOCKET_DIR"
)

// MaxAddressBytes bounds the address in a handshake line (a unix socket
// path is at most 108 bytes; a host:port far less).
const MaxAddressBytes = 1024

// Flow-control windows both ends of the connection a handshake line
// announces set (proto/launch's host side, the Go SDK's server side).
// Setting them turns off gRPC's bandwidth-delay estimation, which otherwise
// sends a PING (and wakes the other end for its ack) on nearly every call
// when few calls are in flight: on a local socket the windows never need to
// grow past these.
const (
	StreamWindowBytes = 1 << 20
	ConnWindowBytes   = 16 << 20
)

// Line is a parsed handshake line.
type Line struct {
	Version int
	Network string // "unix" or "tcp"
	Address string
}

// String formats the line without a trailing newline.
func (l Line) String() string {
	return fmt.Sprintf("%s|%d|%s|%s", Prefix, l.Version, l.Network, l.Address)
}

// Target returns the gRPC dial target for the address.
func (l Line) Target() string {
	if l.Network == "unix" {
		return "unix://" + l.Address
	}
	return l.Address
}

// Parse parses one handshake line. The error says what is wrong in words a
// plugin author can act on.
func Parse(s string) (Line, error) {
	s = strings.TrimRight(s, "\r\n")
	parts := strings.Split(s, "|")
	if len(parts) != 4 || parts[0] != Prefix {
		return Line{}, fmt.Errorf("parse handshake: want %q, got %q (a plugin must print only the handshake line to stdout; logs belong on stderr)",
			Prefix+"|<version>|unix|<socket path>", Truncate(s, TruncateLimit))
	}
	v, err := strconv.Atoi(parts[1])
	if err != nil {
		return Line{}, fmt.Errorf("parse handshake: protocol version %q is not a number", Truncate(parts[1], TruncateLimit))
	}
	if v != ProtocolVersion {
		return Line{}, fmt.Errorf("parse handshake: plugin speaks protocol version %d, host speaks %d", v, ProtocolVersion)
	}
	switch parts[2] {
	case "unix", "tcp":
	default:
		return Line{}, fmt.Errorf("parse handshake: network %q is neither unix nor tcp", Truncate(parts[2], TruncateLimit))
	}
	if parts[3] == "" {
		return Line{}, fmt.Errorf("parse handshake: empty address")
	}
	if len(parts[3]) > MaxAddressBytes {
		return Line{}, fmt.Errorf("parse handshake: address of %d bytes is longer than %d", len(parts[3]), MaxAddressBytes)
	}
	return Line{Version: v, Network: parts[2], Address: parts[3]}, nil
}

// MaxMessageBytes is the largest gRPC message either end of the
// host↔plugin connection sends or accepts (64 MiB).
const MaxMessageBytes = 64 << 20
