package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/prism-suite/prism/harness/backend"
)

// Ports inside the containers.
const (
	redisPort     = 6379
	redisBusPort  = 16379
	natsPort      = 4222
	natsRoutePort = 6222
)

func dockerClient(ctx context.Context) (*client.Client, error) {
	cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("connect docker: %w", err)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("ping docker: %w", err)
	}
	return cli, nil
}

// labels are the harness's labels (so that backend.Sweep removes a
// container a killed run left).
func labels(kind backend.Kind) map[string]string {
	host, _ := os.Hostname()
	return map[string]string{
		backend.LabelHarness: "true", "prism.kind": string(kind) + "-cluster",
		backend.LabelPID: strconv.Itoa(os.Getpid()), backend.LabelHost: host,
	}
}

// createNetwork creates a bridge network with a subnet of its own (a node
// keeps its address across restarts only on a user-configured subnet),
// trying a few random 10.x.y.0/24 until one does not overlap.
func createNetwork(ctx context.Context, cli *client.Client, kind backend.Kind) (id string, subnet netip.Prefix, err error) {
	name := fmt.Sprintf("prism-%s-cluster-%d-%d", kind, os.Getpid(), time.Now().UnixNano()%1_000_000)
	for range 8 {
		subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + rand.IntN(50)), byte(rand.IntN(256)), 0}), 24)
		var res client.NetworkCreateResult
		res, err = cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver: "bridge", Labels: labels(kind),
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet}}},
		})
		if err == nil {
			return res.ID, subnet, nil
		}
		if !strings.Contains(err.Error(), "overlap") {
			break
		}
	}
	return "", netip.Prefix{}, fmt.Errorf("create network %s: %w", name, err)
}

// nodeIP is the fixed address of node i on subnet (.10, .11, ...).
func nodeIP(subnet netip.Prefix, i int) netip.Addr {
	b := subnet.Addr().As4()
	b[3] = byte(10 + i)
	return netip.AddrFrom4(b)
}

// startContainers runs the nodes as containers on a network of their own.
// Each node has a fixed address there, which is what it announces and what
// the plugin on the host dials (the host reaches a bridge network it created
// directly; nothing is published on 127.0.0.1).
func startContainers(ctx context.Context, kind backend.Kind, o backend.Options, logf func(string, ...any)) (*instance, error) {
	cli, err := dockerClient(ctx)
	if err != nil {
		return nil, err
	}
	image := o.Image(kind)
	ins, err := cli.ImageInspect(ctx, image)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("image %s: %w (build it with ci/images/build.sh; clusters never pull)", image, err)
	}
	netID, subnet, err := createNetwork(ctx, cli, kind)
	if err != nil {
		cli.Close()
		return nil, err
	}
	c := newInstance(kind, backend.Container)
	c.info.Image, c.info.ImageID = image, ins.ID
	c.cleanup = func(ctx context.Context) error {
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := cli.NetworkRemove(ctx, netID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove network: %w", err)
		}
		return nil
	}
	n := redisNodes
	if kind == backend.NATS {
		n = natsNodes
	}
	logf("backend: starting %d %s containers (%s) on network %s ...", n, kind, image, subnet)
	for i := range n {
		ip := nodeIP(subnet, i)
		name := fmt.Sprintf("%s-%d", kind, i)
		var args []string
		addr := hostPort(ip.String(), redisPort)
		switch kind {
		case backend.Redis:
			args = append([]string{"--port", strconv.Itoa(redisPort), "--cluster-port", strconv.Itoa(redisBusPort),
				"--cluster-announce-ip", ip.String(), "--protected-mode", "no", "--dir", "/data"}, redisArgs()...)
		case backend.NATS:
			addr = hostPort(ip.String(), natsPort)
			var routes []string
			for j := range n {
				if j != i {
					routes = append(routes, "nats://"+hostPort(nodeIP(subnet, j).String(), natsRoutePort))
				}
			}
			args = append([]string{"-p", strconv.Itoa(natsPort), "-sd", "/data/js",
				"--cluster", "nats://" + hostPort("0.0.0.0", natsRoutePort)}, natsArgs(name, routes)...)
		}
		res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Config:     &container.Config{Image: image, Cmd: args, Labels: labels(kind)},
			HostConfig: &container.HostConfig{},
			NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
				netID: {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: ip}},
			}},
		})
		if err != nil {
			return c, fmt.Errorf("create %s container: %w", name, err)
		}
		cn := &ctrNode{name: name, address: addr, ctrID: res.ID, netID: netID, ip: ip, cli: cli, busPort: redisBusPort}
		if kind == backend.NATS {
			cn.busPort = natsRoutePort
		}
		c.nodes = append(c.nodes, cn)
		if err := cn.start(ctx); err != nil {
			return c, err
		}
	}
	return c, nil
}

// ctrNode is a node in a container with a fixed address on the cluster's
// network.
type ctrNode struct {
	name, address, ctrID, netID string
	ip                          netip.Addr
	busPort                     int
	cli                         *client.Client

	mu     sync.Mutex
	paused bool
}

func (n *ctrNode) id() string   { return n.name }
func (n *ctrNode) addr() string { return n.address }
func (n *ctrNode) bus() int     { return n.busPort }

func (n *ctrNode) start(ctx context.Context) error {
	if _, err := n.cli.ContainerStart(ctx, n.ctrID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("%s: docker start: %w", n.name, err)
	}
	return nil
}

// kill: docker kill (SIGKILL), and wait until the container has stopped.
func (n *ctrNode) kill(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.paused {
		if _, err := n.cli.ContainerUnpause(ctx, n.ctrID, client.ContainerUnpauseOptions{}); err == nil {
			n.paused = false
		}
	}
	if _, err := n.cli.ContainerKill(ctx, n.ctrID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		return fmt.Errorf("%s: docker kill: %w", n.name, err)
	}
	return poll(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		ins, err := n.cli.ContainerInspect(ctx, n.ctrID, client.ContainerInspectOptions{})
		if err != nil {
			return err
		}
		if ins.Container.State != nil && ins.Container.State.Running {
			return errors.New("still running")
		}
		return nil
	})
}

func (n *ctrNode) pause(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.cli.ContainerPause(ctx, n.ctrID, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("%s: docker pause: %w", n.name, err)
	}
	n.paused = true
	return nil
}

func (n *ctrNode) resume(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.cli.ContainerUnpause(ctx, n.ctrID, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("%s: docker unpause: %w", n.name, err)
	}
	n.paused = false
	return nil
}

// disconnect: docker network disconnect; the node is cut off from the
// other nodes and from the host alike.
func (n *ctrNode) disconnect(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.cli.NetworkDisconnect(ctx, n.netID, client.NetworkDisconnectOptions{Container: n.ctrID, Force: true}); err != nil {
		return fmt.Errorf("%s: docker network disconnect: %w", n.name, err)
	}
	return nil
}

// reconnect joins the network again on the node's own address.
func (n *ctrNode) reconnect(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.cli.NetworkConnect(ctx, n.netID, client.NetworkConnectOptions{Container: n.ctrID,
		EndpointConfig: &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: n.ip}}}); err != nil {
		return fmt.Errorf("%s: docker network connect: %w", n.name, err)
	}
	return nil
}

func (n *ctrNode) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	n.mu.Lock()
	paused := n.paused
	n.mu.Unlock()
	if paused {
		_, _ = n.cli.ContainerUnpause(ctx, n.ctrID, client.ContainerUnpauseOptions{})
	}
	if _, err := n.cli.ContainerRemove(ctx, n.ctrID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%s: docker rm: %w", n.name, err)
	}
	return nil
}
