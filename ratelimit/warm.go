package ratelimit

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// WarmUp readies a Cluster client for its first decisions; for any other client
// it does nothing. A fresh go-redis Cluster client loads the slot map and the
// server's command table (COMMAND: a large reply) on its first command and dials
// each node on first use; on a loaded machine that takes longer than a decision's
// timeout (redis.timeout, 50 ms by default), so the first decisions of a replica
// just started would get on_store_error's answer. WarmUp does that work up
// front: a PING (slot map, command table), then SCRIPT LOAD of the per-key
// scripts on every node (a connection to each). ctx bounds it; the gateway runs
// it in the background at start.
func WarmUp(ctx context.Context, client RedisClient) error {
	cc, ok := client.(*redis.ClusterClient)
	if !ok {
		return nil
	}
	if err := cc.Ping(ctx).Err(); err != nil {
		return err
	}
	for _, src := range []string{gcraScript, slidingScript} {
		if err := cc.ScriptLoad(ctx, src).Err(); err != nil {
			return err
		}
	}
	return nil
}
