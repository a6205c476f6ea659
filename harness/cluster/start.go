package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/prism-suite/prism/harness/backend"
)

// Start starts a cluster of kind (redis or nats) with o.Provider: process,
// container, or auto (container when Docker answers and the image is
// present, else process). It forms the cluster and waits until it is
// healthy within o.StartTimeout. On error what was started is removed.
func Start(ctx context.Context, kind backend.Kind, o backend.Options) (Instance, error) {
	if kind != backend.Redis && kind != backend.NATS {
		return nil, &backend.HarnessError{Err: fmt.Errorf("no cluster topology for backend %s (redis and nats have one)", kind)}
	}
	if o.Auth != nil {
		return nil, &backend.HarnessError{Err: fmt.Errorf("a %s cluster with credentials is not supported", kind)}
	}
	o = o.WithDefaults()
	logf := o.Logf
	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	provider, reason := o.Provider, ""
	if provider == "" || provider == backend.Auto {
		provider, reason = chooseProvider(ctx, kind, o)
	}
	var (
		c   *instance
		err error
	)
	switch provider {
	case backend.Process:
		c, err = startProcesses(ctx, kind, o, logf)
	case backend.Container:
		c, err = startContainers(ctx, kind, o, logf)
	default:
		return nil, &backend.HarnessError{Err: fmt.Errorf("a %s cluster cannot be provided by %q (process or container)", kind, provider)}
	}
	if c != nil {
		c.info.Reason = reason
	}
	if err == nil {
		err = c.ops.form(ctx, c.nodes)
	}
	if err == nil {
		err = c.WaitHealthy(ctx)
	}
	if err == nil {
		c.info.ServerVersion, err = c.ops.version(ctx, c.nodes)
	}
	if err != nil {
		if c != nil {
			_ = c.Close(context.Background())
		}
		return nil, &backend.HarnessError{Err: fmt.Errorf("start %s cluster (%s): %w", kind, provider, err)}
	}
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr()
	}
	c.info.Address = strings.Join(addrs, ",")
	c.info.Cluster = &backend.ClusterInfo{Topology: string(kind) + "-cluster", Nodes: len(c.nodes), Version: c.info.ServerVersion}
	logf("backend: %s cluster of %d nodes (%s) ready: %s", kind, len(c.nodes), provider, c.info.Address)
	return c, nil
}

func newInstance(kind backend.Kind, provider backend.Provider) *instance {
	c := &instance{kind: kind, info: backend.Info{Kind: kind, Provider: provider}}
	if kind == backend.Redis {
		c.ops = redisOps{}
	} else {
		c.ops = natsOps{}
	}
	return c
}

// startProcesses runs the nodes as local processes on loopback ports.
func startProcesses(ctx context.Context, kind backend.Kind, o backend.Options, logf func(string, ...any)) (*instance, error) {
	c := newInstance(kind, backend.Process)
	c.partitionWhy = errPartition.Error()
	bin := o.RedisServerPath
	if kind == backend.NATS {
		bin = o.NATSServerPath
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("find %s server: %w", kind, err)
	}
	n := redisNodes
	if kind == backend.NATS {
		n = natsNodes
	}
	// A client port and a bus/route port per node.
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	for i := range n {
		dir, err := os.MkdirTemp("", fmt.Sprintf("prism-%s-cluster-%d-", kind, i))
		if err != nil {
			return c, fmt.Errorf("create data dir: %w", err)
		}
		p := &procNode{name: fmt.Sprintf("%s-%d", kind, i), path: path, dir: dir, address: hostPort("127.0.0.1", ports[2*i]), busPort: ports[2*i+1]}
		switch kind {
		case backend.Redis:
			p.args = append([]string{"--port", strconv.Itoa(ports[2*i]), "--cluster-port", strconv.Itoa(ports[2*i+1]),
				"--bind", "127.0.0.1", "--dir", dir}, redisArgs()...)
		case backend.NATS:
			var routes []string
			for j := range n {
				if j != i {
					routes = append(routes, "nats://"+hostPort("127.0.0.1", ports[2*j+1]))
				}
			}
			p.args = append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(ports[2*i]), "-sd", dir,
				"--cluster", "nats://" + hostPort("127.0.0.1", ports[2*i+1])}, natsArgs(p.name, routes)...)
		}
		c.nodes = append(c.nodes, p)
	}
	logf("backend: starting %d %s processes (%s) ...", n, kind, path)
	for _, nd := range c.nodes {
		if err := nd.start(ctx); err != nil {
			return c, err
		}
	}
	return c, nil
}

// natsArgs are the JetStream and cluster arguments of node name.
func natsArgs(name string, routes []string) []string {
	return []string{"-js", "--server_name", name, "--cluster_name", NATSClusterName, "--routes", strings.Join(routes, ",")}
}

// chooseProvider: container when Docker answers and the image is present,
// else process.
func chooseProvider(ctx context.Context, kind backend.Kind, o backend.Options) (backend.Provider, string) {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	cli, err := dockerClient(ctx)
	if err != nil {
		return backend.Process, fmt.Sprintf("no docker daemon (%v): processes", err)
	}
	defer cli.Close()
	image := o.Image(kind)
	if _, err := cli.ImageInspect(ctx, image); err != nil {
		return backend.Process, fmt.Sprintf("image %s is not present (%v): processes", image, err)
	}
	return backend.Container, fmt.Sprintf("docker answers and image %s is present", image)
}
