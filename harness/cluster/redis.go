package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Redis Cluster layout: 3 primaries (nodes 0-2, a third of the slots each)
// and 3 replicas (node 3+i replicates node i).
const (
	redisPrimaries = 3
	redisNodes     = 6
	redisSlots     = 16384
	// redisNodeTimeout is cluster-node-timeout: how long a node may not
	// answer before it is failed over.
	redisNodeTimeout = 2000 * time.Millisecond
)

// redisArgs are the cluster arguments every node runs with (after its
// address arguments).
func redisArgs() []string {
	return []string{
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.Itoa(int(redisNodeTimeout / time.Millisecond)),
		// A replica whose primary failed long ago may still take over
		// (nemeses keep nodes down only seconds; never block failover).
		"--cluster-replica-validity-factor", "0",
		"--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", "",
	}
}

type redisOps struct{}

func redisClient(addr string) *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, ContextTimeoutEnabled: true, DisableIdentity: true, Protocol: 2})
}

func (redisOps) do(ctx context.Context, n node, f func(*goredis.Client) error) error {
	c := redisClient(n.addr())
	defer c.Close()
	if err := f(c); err != nil {
		return fmt.Errorf("%s (%s): %w", n.id(), n.addr(), err)
	}
	return nil
}

func (r redisOps) form(ctx context.Context, nodes []node) error {
	if len(nodes) != redisNodes {
		return fmt.Errorf("a redis cluster here has %d nodes, got %d", redisNodes, len(nodes))
	}
	for _, n := range nodes {
		if err := poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
			return r.do(ctx, n, func(c *goredis.Client) error { return c.Ping(ctx).Err() })
		}); err != nil {
			return fmt.Errorf("wait for %s to answer: %w", n.id(), err)
		}
	}
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		if err := r.do(ctx, n, func(c *goredis.Client) (err error) {
			ids[i], err = c.ClusterMyID(ctx).Result()
			return err
		}); err != nil {
			return err
		}
	}
	// Slots first, then the meeting: a replica can only replicate a known
	// primary.
	per := redisSlots / redisPrimaries
	for i := range redisPrimaries {
		lo, hi := i*per, (i+1)*per-1
		if i == redisPrimaries-1 {
			hi = redisSlots - 1
		}
		if err := r.do(ctx, nodes[i], func(c *goredis.Client) error {
			return c.ClusterAddSlotsRange(ctx, lo, hi).Err()
		}); err != nil {
			return fmt.Errorf("add slots %d-%d: %w", lo, hi, err)
		}
	}
	host, port, _ := net.SplitHostPort(nodes[0].addr())
	for _, n := range nodes[1:] {
		if err := r.do(ctx, n, func(c *goredis.Client) error {
			// The bus port is given: it is not always port+10000.
			return c.Do(ctx, "cluster", "meet", host, port, nodes[0].bus()).Err()
		}); err != nil {
			return fmt.Errorf("cluster meet: %w", err)
		}
	}
	// Every node must know every other before a replica names its primary.
	if err := poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		for _, n := range nodes {
			if err := r.do(ctx, n, func(c *goredis.Client) error {
				s, err := c.ClusterNodes(ctx).Result()
				if err != nil {
					return err
				}
				for _, id := range ids {
					if !strings.Contains(s, id) {
						return fmt.Errorf("does not know node %s yet", id)
					}
				}
				if strings.Contains(s, "handshake") {
					return errors.New("still in handshake")
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("wait for the nodes to meet: %w", err)
	}
	for i := redisPrimaries; i < redisNodes; i++ {
		primary := ids[i-redisPrimaries]
		if err := r.do(ctx, nodes[i], func(c *goredis.Client) error {
			return c.ClusterReplicate(ctx, primary).Err()
		}); err != nil {
			return fmt.Errorf("replicate: %w", err)
		}
	}
	return nil
}

// healthy: every node answers, says cluster_state:ok with all slots ok and
// knows all nodes; every replica's link to its primary is up, and there are
// as many primaries with slots as at the start.
func (r redisOps) healthy(ctx context.Context, nodes []node) error {
	primaries := 0
	for _, n := range nodes {
		if err := r.do(ctx, n, func(c *goredis.Client) error {
			ci, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			f := infoFields(ci)
			if f["cluster_state"] != "ok" || f["cluster_slots_ok"] != strconv.Itoa(redisSlots) ||
				f["cluster_known_nodes"] != strconv.Itoa(len(nodes)) {
				return fmt.Errorf("cluster_state:%s cluster_slots_ok:%s cluster_known_nodes:%s",
					f["cluster_state"], f["cluster_slots_ok"], f["cluster_known_nodes"])
			}
			ri, err := c.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			rf := infoFields(ri)
			switch rf["role"] {
			case "master":
				if rf["connected_slaves"] != "0" {
					primaries++
				}
			case "slave":
				if rf["master_link_status"] != "up" {
					return fmt.Errorf("replica's link to its primary is %s", rf["master_link_status"])
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if primaries != redisPrimaries {
		return fmt.Errorf("%d primaries have a replica, want %d", primaries, redisPrimaries)
	}
	return nil
}

func infoFields(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// leader: the primary serving key's slot, as the first node that answers
// sees it (CLUSTER KEYSLOT, CLUSTER SHARDS).
func (r redisOps) leader(ctx context.Context, nodes []node, key string) (string, error) {
	var errs []error
	for _, n := range nodes {
		var id string
		err := r.do(ctx, n, func(c *goredis.Client) error {
			slot, err := c.ClusterKeySlot(ctx, key).Result()
			if err != nil {
				return err
			}
			shards, err := c.ClusterShards(ctx).Result()
			if err != nil {
				return err
			}
			for _, sh := range shards {
				in := false
				for _, sr := range sh.Slots {
					in = in || (sr.Start <= slot && slot <= sr.End)
				}
				if !in {
					continue
				}
				for _, sn := range sh.Nodes {
					if sn.Role != "master" || sn.Health != "online" {
						continue
					}
					addr := hostPort(sn.IP, int(sn.Port))
					for _, m := range nodes {
						if m.addr() == addr {
							id = m.id()
							return nil
						}
					}
					return fmt.Errorf("slot %d's primary %s is no node of this cluster", slot, addr)
				}
			}
			return fmt.Errorf("slot %d has no online primary", slot)
		})
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("find the primary of key %q: %w", key, errors.Join(errs...))
}

func (r redisOps) role(ctx context.Context, n node) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var role string
	_ = r.do(ctx, n, func(c *goredis.Client) error {
		s, err := c.Info(ctx, "replication").Result()
		switch infoFields(s)["role"] {
		case "master":
			role = "primary"
		case "slave":
			role = "replica"
		}
		return err
	})
	return role
}

func (r redisOps) version(ctx context.Context, nodes []node) (string, error) {
	var v string
	err := r.do(ctx, nodes[0], func(c *goredis.Client) error {
		s, err := c.Info(ctx, "server").Result()
		v = infoFields(s)["redis_version"]
		return err
	})
	return v, err
}

func (redisOps) pluginConfig(nodes []node) map[string]any {
	addrs := make([]any, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr()
	}
	return map[string]any{"addresses": addrs}
}
