package testenv

import (
	"context"
	"testing"
)

// TestRedisClusterFailover checks the starter's promises that the integration
// tests lean on (the Sentinel and Consul cluster starters are exercised by the
// gateway's failover tests): three masters with a replica each, the slot computation agrees
// with Redis's own, and a killed master is replaced by its replica.
func TestRedisClusterFailover(t *testing.T) {
	c := StartRedisCluster(t)
	if m := c.Masters(); len(m) != RedisClusterMasters {
		t.Fatalf("masters %v", m)
	}
	cc := c.Client()
	ctx := context.Background()
	for _, k := range []string{"a", "ratelimit:{shared:alice}:tb", "{}x", "x{}y", "{user1000}.following"} {
		slot, err := cc.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := RedisSlot(k); int64(got) != slot {
			t.Errorf("slot of %q: %d, redis says %d", k, got, slot)
		}
	}
	victim := c.MasterOf("a")
	replica := c.ReplicaOf(victim)
	if victim == "" || replica == "" {
		t.Fatalf("master %q replica %q", victim, replica)
	}
	c.Kill(victim)
	c.WaitHealthy()
	if got := c.MasterOf("a"); got != replica {
		t.Fatalf("key a served by %q after failover, want the replica %s", got, replica)
	}
}
