// Package cluster starts clusters of backend servers for the harness — a Redis
// Cluster of 3 primaries and 3 replicas, a NATS cluster of 3 nodes with
// JetStream — and injects faults into them: every cluster implements
// [nemesis.Cluster] (kill and restart a node, pause and resume it, cut it off
// the network and join it again, find the node that leads a key or stream,
// wait until the cluster is healthy).
//
// Two providers: process (redis-server and nats-server on loopback ports,
// each node with its own data dir; no partitions) and container (the offline
// images on a Docker network the harness creates, each node on a fixed
// address of that network, which the host reaches through the bridge;
// partition is docker network disconnect).
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/nemesis"
)

// Instance is a running cluster: a backend instance whose plugin config
// lists every node, and a cluster the nemeses act on.
type Instance interface {
	backend.Instance
	nemesis.Cluster
}

// ops are what a kind of cluster does on top of its nodes.
type ops interface {
	// form makes one cluster of freshly started nodes.
	form(ctx context.Context, nodes []node) error
	// healthy returns nil when the cluster serves with every node up.
	healthy(ctx context.Context, nodes []node) error
	// leader returns the id of the node leading key.
	leader(ctx context.Context, nodes []node, key string) (string, error)
	// role returns what n is now ("" when it does not answer).
	role(ctx context.Context, n node) string
	// version returns the servers' version.
	version(ctx context.Context, nodes []node) (string, error)
	// pluginConfig is the plugin's config document for the nodes.
	pluginConfig(nodes []node) map[string]any
}

type instance struct {
	kind  backend.Kind
	ops   ops
	nodes []node
	// cleanup removes what the provider created besides the nodes (the
	// network).
	cleanup func(ctx context.Context) error
	// partitionable says whether Disconnect works, and why not.
	partitionWhy string

	mu     sync.Mutex
	info   backend.Info
	closed bool
}

var _ Instance = (*instance)(nil)

func (c *instance) Info() backend.Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

func (c *instance) PluginConfig() (map[string]any, map[string]string) {
	return c.ops.pluginConfig(c.nodes), nil
}

func (c *instance) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	var errs []error
	for _, n := range c.nodes {
		if err := n.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", n.id(), err))
		}
	}
	if c.cleanup != nil {
		if err := c.cleanup(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return &backend.HarnessError{Err: errors.Join(errs...)}
	}
	return nil
}

// Nodes implements nemesis.Cluster.
func (c *instance) Nodes(ctx context.Context) ([]nemesis.Node, error) {
	out := make([]nemesis.Node, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = nemesis.Node{ID: n.id(), Addr: n.addr(), Role: c.ops.role(ctx, n)}
	}
	return out, nil
}

// Supports implements nemesis.Cluster.
func (c *instance) Supports(k nemesis.Kind) (bool, string) {
	if k == nemesis.Partition && c.partitionWhy != "" {
		return false, c.partitionWhy
	}
	return true, ""
}

func (c *instance) node(id string) (node, error) {
	for _, n := range c.nodes {
		if n.id() == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node %q in this %s cluster", id, c.kind)
}

func (c *instance) act(ctx context.Context, id string, f func(node, context.Context) error) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	return f(n, ctx)
}

// Kill implements nemesis.Cluster.
func (c *instance) Kill(ctx context.Context, id string) error { return c.act(ctx, id, node.kill) }

// Restart implements nemesis.Cluster: the node runs again with its data and
// address; it does not wait for the cluster (WaitHealthy does).
func (c *instance) Restart(ctx context.Context, id string) error {
	return c.act(ctx, id, node.start)
}

// Pause implements nemesis.Cluster.
func (c *instance) Pause(ctx context.Context, id string) error { return c.act(ctx, id, node.pause) }

// Resume implements nemesis.Cluster.
func (c *instance) Resume(ctx context.Context, id string) error { return c.act(ctx, id, node.resume) }

// Disconnect implements nemesis.Cluster.
func (c *instance) Disconnect(ctx context.Context, id string) error {
	return c.act(ctx, id, node.disconnect)
}

// Reconnect implements nemesis.Cluster.
func (c *instance) Reconnect(ctx context.Context, id string) error {
	return c.act(ctx, id, node.reconnect)
}

// Leader implements nemesis.Cluster.
func (c *instance) Leader(ctx context.Context, key string) (string, error) {
	return c.ops.leader(ctx, c.nodes, key)
}

// WaitHealthy implements nemesis.Cluster: it polls every 200ms until ctx
// ends.
func (c *instance) WaitHealthy(ctx context.Context) error {
	return poll(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return c.ops.healthy(cctx, c.nodes)
	})
}

// freePorts returns n TCP ports that were free on 127.0.0.1 a moment ago,
// all different.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	out := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
