package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSClusterName is the cluster name every node of a NATS cluster runs with.
const NATSClusterName = "prism"

// natsNodes is the size of a NATS cluster here (JetStream replicas 3).
const natsNodes = 3

type natsOps struct{}

// conn connects to n alone (no reconnect: the servers it learns of, which
// metaReady counts, are never dialled).
func (natsOps) conn(ctx context.Context, n node) (*gonats.Conn, error) {
	timeout := time.Second
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), 10*time.Millisecond)
	}
	nc, err := gonats.Connect("nats://"+n.addr(), gonats.Timeout(timeout), gonats.NoReconnect(),
		gonats.DontRandomize())
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", n.id(), n.addr(), err)
	}
	return nc, nil
}

// form: the routes are in the nodes' arguments; the cluster is formed when
// JetStream answers on every node (a meta leader is elected).
func (o natsOps) form(ctx context.Context, nodes []node) error {
	return poll(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		// A JetStream request before a meta leader is elected may get no
		// answer at all: bound each attempt.
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := o.metaReady(ctx, nodes); err != nil {
			return err
		}
		return o.placeR3(ctx, nodes[0])
	})
}

// probeStream is the stream placeR3 creates and deletes.
const probeStream = "PRISM_CLUSTER_PROBE"

// placeR3 creates and deletes a stream of 3 replicas: placement succeeds
// only once the meta group knows every peer online.
func (o natsOps) placeR3(ctx context.Context, n node) error {
	nc, err := o.conn(ctx, n)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: probeStream, Subjects: []string{"_prism.cluster.probe"},
		Replicas: natsNodes, Storage: jetstream.MemoryStorage}); err != nil {
		return fmt.Errorf("place a stream of %d replicas: %w", natsNodes, err)
	}
	if err := js.DeleteStream(ctx, probeStream); err != nil {
		return fmt.Errorf("delete the probe stream: %w", err)
	}
	return nil
}

func (o natsOps) metaReady(ctx context.Context, nodes []node) error {
	for _, n := range nodes {
		nc, err := o.conn(ctx, n)
		if err != nil {
			return err
		}
		err = func() error {
			defer nc.Close()
			if got := len(nc.Servers()); got < len(nodes) {
				return fmt.Errorf("%s knows %d servers, want %d", n.id(), got, len(nodes))
			}
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			if _, err := js.AccountInfo(ctx); err != nil {
				return fmt.Errorf("%s: jetstream: %w", n.id(), err)
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// healthy: JetStream answers on every node, and every stream has a leader
// and all its replicas current.
func (o natsOps) healthy(ctx context.Context, nodes []node) error {
	if err := o.metaReady(ctx, nodes); err != nil {
		return err
	}
	nc, err := o.conn(ctx, nodes[0])
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	l := js.ListStreams(ctx)
	for si := range l.Info() {
		if err := streamHealthy(si); err != nil {
			return err
		}
	}
	if err := l.Err(); err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	return nil
}

func streamHealthy(si *jetstream.StreamInfo) error {
	name := si.Config.Name
	if si.Config.Replicas <= 1 {
		return nil
	}
	if si.Cluster == nil || si.Cluster.Leader == "" {
		return fmt.Errorf("stream %s has no leader", name)
	}
	if len(si.Cluster.Replicas) != si.Config.Replicas-1 {
		return fmt.Errorf("stream %s has %d replicas besides its leader, want %d", name, len(si.Cluster.Replicas), si.Config.Replicas-1)
	}
	for _, p := range si.Cluster.Replicas {
		if !p.Current || p.Offline {
			return fmt.Errorf("stream %s: replica %s is not current", name, p.Name)
		}
	}
	return nil
}

// leader: the server that leads stream key, or, when no stream has that
// name (key is then a topic, whose stream is the plugin's business), the
// only replicated message stream there is (server names are node ids).
func (o natsOps) leader(ctx context.Context, nodes []node, key string) (string, error) {
	var errs []error
	for _, n := range nodes {
		nc, err := o.conn(ctx, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		leader, err := func() (string, error) {
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return "", err
			}
			si, err := streamFor(ctx, js, key)
			if err != nil {
				return "", err
			}
			if si.Cluster == nil || si.Cluster.Leader == "" {
				return "", fmt.Errorf("stream %s has no leader now", key)
			}
			return si.Cluster.Leader, nil
		}()
		if err == nil {
			return leader, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("find the leader of stream %q: %w", key, errors.Join(errs...))
}

func (o natsOps) role(ctx context.Context, n node) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	nc, err := o.conn(ctx, n)
	if err != nil {
		return ""
	}
	nc.Close()
	return "member"
}

func (o natsOps) version(ctx context.Context, nodes []node) (string, error) {
	nc, err := o.conn(ctx, nodes[0])
	if err != nil {
		return "", err
	}
	defer nc.Close()
	return nc.ConnectedServerVersion(), nil
}

func (natsOps) pluginConfig(nodes []node) map[string]any {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = "nats://" + n.addr()
	}
	return map[string]any{"url": strings.Join(urls, ","), "stream_replicas": int64(natsNodes)}
}

// streamFor returns the stream named key, else the only replicated message
// stream (not the harness's placement probe, an object store's or a KV
// bucket's); more than one is an error naming them.
func streamFor(ctx context.Context, js jetstream.JetStream, key string) (*jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, key)
	if err == nil {
		return s.Info(ctx)
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrInvalidStreamName) {
		return nil, err
	}
	var found []*jetstream.StreamInfo
	l := js.ListStreams(ctx)
	for si := range l.Info() {
		name := si.Config.Name
		// JetStream keeps object stores and KV buckets in streams named OBJ_*
		// and KV_*: they are not message streams.
		if si.Config.Replicas > 1 && name != probeStream && !strings.HasPrefix(name, "OBJ_") && !strings.HasPrefix(name, "KV_") {
			found = append(found, si)
		}
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("no stream %q and no replicated stream", key)
	}
	var names []string
	for _, si := range found {
		names = append(names, si.Config.Name)
	}
	return nil, fmt.Errorf("no stream %q, and %d replicated streams (%s): name one", key, len(found), strings.Join(names, ", "))
}
