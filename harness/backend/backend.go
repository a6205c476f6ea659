// Package backend starts the backend a plugin talks to (a Redis server, a NATS
// server) behind one interface, with four providers:
//
//   - container: testcontainers-go, official images by default (redis:7-alpine,
//     nats:2), overridable per backend by environment variable;
//   - process:   a local server binary (redis-server, nats-server) on a free
//     loopback port with its own temp dir;
//   - embedded:  in-process (miniredis; nats-server with JetStream);
//   - external:  an address (and credentials) the user gives.
//
// Container, process and external instances are described by a backend
// definition file (package definition, docs/backend-file.md): any backend
// through [Options.Definition], and redis and nats through their embedded
// backends/<name>/backend.yaml ([BuiltinDefinition]; NATS with users and
// Redis with requirepass keep Go providers).
//
// Provider "auto" picks container when a Docker daemon answers and the image is
// present or pullable, else embedded (but process for a Redis with an admin
// ACL user in Options.Auth when redis-server is on PATH: miniredis cannot
// manage ACL users), and says which it chose and why in [Info.Reason]. The chosen provider, image and version go into reports.
// The decision takes a few seconds at most: a missing image gets one pull
// attempt of at most 6s.
//
// Every instance listens on 127.0.0.1 (containers publish their port there,
// pinned so that it survives a restart) and is set up for fault injection:
// instances of every provider but external implement [Outager] (data written
// before Down is there after Up), and container and process instances
// implement [Pauser] (docker pause, SIGSTOP).
//
// Containers: the harness sets TESTCONTAINERS_RYUK_DISABLED=true in its own
// environment when it is unset (the Ryuk reaper needs an image that a machine
// without a registry cannot pull), so it removes its containers itself: Close
// removes an instance's container, and [Sweep] removes the ones left by a run
// that was killed. Every container carries the label prism.harness=true.
// Where no registry is reachable, build the images with ci/images/build.sh
// and point PRISM_REDIS_IMAGE and PRISM_NATS_IMAGE at them.
package backend

import (
	"context"
	"fmt"
)

// Kind names a backend: "memstore" (no instance), "redis", "nats".
type Kind string

// The backends the harness can set up.
const (
	Memstore Kind = "memstore"
	Redis    Kind = "redis"
	NATS     Kind = "nats"
)

// Provider names how an instance is provided.
type Provider string

// The providers.
const (
	Auto      Provider = "auto"
	Container Provider = "container"
	Process   Provider = "process"
	Embedded  Provider = "embedded"
	External  Provider = "external"
	// None is the provider of a backend that needs no instance (memstore).
	None Provider = "none"
)

// Info describes a running instance, for reports.
type Info struct {
	Kind          Kind     `json:"kind"`
	Provider      Provider `json:"provider"`
	Image         string   `json:"image,omitempty"`
	ImageID       string   `json:"image_id,omitempty"`
	ServerVersion string   `json:"server_version,omitempty"`
	// Address is host:port on the loopback interface (or the external address).
	Address string `json:"address,omitempty"`
	// Reason says why auto chose this provider, or what a fallback replaced.
	Reason string `json:"reason,omitempty"`
	// File is the backend definition file the instance was described by
	// (backends/redis/backend.yaml for the built-ins' container and process
	// providers).
	File string `json:"file,omitempty"`
	// Cluster describes a cluster instance (harness/cluster); nil for a
	// single server.
	Cluster *ClusterInfo `json:"cluster,omitempty"`
}

// ClusterInfo are the facts of a cluster instance.
type ClusterInfo struct {
	// Topology is "redis-cluster" or "nats-cluster".
	Topology string `json:"topology"`
	// Nodes is how many servers the cluster has.
	Nodes int `json:"nodes"`
	// Version is the servers' version.
	Version string `json:"version,omitempty"`
}

// Instance is a running backend.
type Instance interface {
	// Info describes the instance.
	Info() Info
	// PluginConfig returns the config document and credentials a plugin needs
	// to reach the instance (e.g. {"address": "127.0.0.1:6379"}).
	PluginConfig() (values map[string]any, credentials map[string]string)
	// Close stops the instance and removes what it created (containers,
	// temp dirs). It is safe to call more than once.
	Close(ctx context.Context) error
}

// Outager is an instance that can be taken down and brought back on the same
// address (fault injection). Instances that cannot do it do not implement it,
// and specs that need it are skipped with that reason.
type Outager interface {
	// Down stops the server; clients get connection errors until Up.
	Down(ctx context.Context) error
	// Up starts it again on the same address.
	Up(ctx context.Context) error
	// Persistent reports whether data written before Down is there after Up.
	Persistent() bool
}

// Pauser is an instance whose server can be frozen with its sockets open, so
// requests hang until a deadline (fault injection).
type Pauser interface {
	// Pause freezes the server; connected clients see requests hang.
	Pause(ctx context.Context) error
	// Unpause lets the server run again.
	Unpause(ctx context.Context) error
}

// HarnessError marks an error of the harness or infrastructure (a container
// that would not start, an image that cannot be pulled), as distinct from a
// plugin failure.
type HarnessError struct{ Err error }

// Error implements error.
func (e *HarnessError) Error() string { return "harness: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *HarnessError) Unwrap() error { return e.Err }

func harnessErr(format string, args ...any) error {
	return &HarnessError{Err: fmt.Errorf(format, args...)}
}
