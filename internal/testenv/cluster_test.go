package testenv

import (
	"context"
	"testing"
	"time"
)

// TestRedisClusterFailover checks the starter's promises that the integration
// tests lean on: three masters with a replica each, the slot computation agrees
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
		if got := redisSlot(k); int64(got) != slot {
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

func TestRedisSentinelFailover(t *testing.T) {
	s := StartRedisSentinel(t)
	old := s.Master()
	if old != s.Servers[0] {
		t.Fatalf("master %s, want %s", old, s.Servers[0])
	}
	s.Kill(old)
	if m := s.WaitMaster(old); m != s.Servers[1] {
		t.Fatalf("new master %s, want the replica %s", m, s.Servers[1])
	}
}

func TestConsulClusterLeaderChange(t *testing.T) {
	c := StartConsulCluster(t)
	start := time.Now()
	old := c.Leader()
	c.KillServer(old)
	if l := c.WaitNewLeader(old); l == old {
		t.Fatal("same leader")
	}
	t.Logf("new leader after %v", time.Since(start))
}
