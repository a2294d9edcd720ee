package testredis

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterMasters is how many masters StartCluster starts; the 16384 slots are split evenly.
const clusterMasters = 3

// Cluster is a Redis Cluster of three masters (no replicas) on loopback ports.
type Cluster struct {
	nodes    []*Server
	busPorts []int // cluster bus port of each node
}

// sharedCluster is the cluster New hands out under CLAUDE_RELAY_TEST_REDIS=cluster, started
// once per test binary (its servers die with the test binary).
var sharedCluster struct {
	once sync.Once
	c    *Cluster
	err  error
}

// StartCluster starts a dedicated three-master Redis Cluster (redis-server --cluster-enabled
// yes on free ports, slots assigned with CLUSTER ADDSLOTSRANGE, nodes joined with CLUSTER
// MEET) and waits until every node reports cluster_state:ok and sees the whole cluster. It is
// stopped when the test ends.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := startCluster()
	if err != nil {
		tb.Fatalf("testredis: %v", err)
	}
	tb.Cleanup(c.stop)
	return c
}

// Addrs returns the host:port of every master.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Client returns a new cluster client seeded with every master; the caller closes it.
func (c *Cluster) Client() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
}

func (c *Cluster) stop() {
	for _, n := range c.nodes {
		n.Stop()
		_ = os.RemoveAll(n.dir)
	}
}

func startCluster() (*Cluster, error) {
	c := &Cluster{}
	for range clusterMasters {
		busPort, err := freePort()
		if err != nil {
			c.stop()
			return nil, err
		}
		srv, err := startServer([]string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(busPort),
			"--cluster-node-timeout", "5000",
		})
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("start cluster node: %w", err)
		}
		c.nodes = append(c.nodes, srv)
		c.busPorts = append(c.busPorts, busPort)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.form(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// form assigns each node its share of the slots, introduces the nodes to each other and waits
// until the cluster is healthy from every node's point of view.
func (c *Cluster) form(ctx context.Context) error {
	clients := make([]*redis.Client, len(c.nodes))
	for i, n := range c.nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.Addr()})
		defer clients[i].Close()
	}
	per := 16384 / len(c.nodes)
	for i, cl := range clients {
		lo, hi := i*per, (i+1)*per-1
		if i == len(clients)-1 {
			hi = 16383
		}
		if err := cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			return fmt.Errorf("cluster addslotsrange %d-%d on %s: %w", lo, hi, c.nodes[i].Addr(), err)
		}
	}
	for i, n := range c.nodes[1:] {
		if err := clients[0].Do(ctx, "CLUSTER", "MEET", "127.0.0.1", n.port, c.busPorts[i+1]).Err(); err != nil {
			return fmt.Errorf("cluster meet %s: %w", n.Addr(), err)
		}
	}
	want := fmt.Sprintf("cluster_known_nodes:%d", len(c.nodes))
	for {
		healthy := true
		var last string
		for _, cl := range clients {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return fmt.Errorf("cluster info on %s: %w", cl.Options().Addr, err)
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, want) || !strings.Contains(info, "cluster_slots_assigned:16384") {
				healthy, last = false, info
				break
			}
			// Every node must also map all slots, or a client seeded there gets a partial view.
			slots, err := cl.ClusterSlots(ctx).Result()
			if err != nil {
				return fmt.Errorf("cluster slots on %s: %w", cl.Options().Addr, err)
			}
			if len(slots) != len(c.nodes) {
				healthy, last = false, fmt.Sprintf("%s maps %d slot ranges", cl.Options().Addr, len(slots))
				break
			}
		}
		if healthy {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster did not become healthy: %s", strings.TrimSpace(last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sharedClusterClient returns a cluster client on the per-binary shared cluster, failing the
// test if the cluster cannot be started.
func sharedClusterClient(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	sharedCluster.once.Do(func() {
		sharedCluster.c, sharedCluster.err = startCluster()
	})
	if sharedCluster.err != nil {
		tb.Fatalf("testredis: %s=cluster: %v", EnvMode, sharedCluster.err)
	}
	return sharedCluster.c.Client()
}
