package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/proc"
	"github.com/infinityxone/gateway/internal/tools"
)

// clusterStartTimeout bounds how long a cluster (Redis Cluster, Sentinel, Consul
// servers) may take to form, and how long a failover may take.
const clusterStartTimeout = 90 * time.Second

// redisMember is one redis-server (or sentinel) of a cluster: its process, probed
// until the server on addr answers PING and INFO with the PID of the process started.
func redisMember(name, addr, bin string, args []string, logPath string) *proc.Process {
	return &proc.Process{
		Name: name, Addr: addr, Path: bin, Args: args, LogPath: logPath,
		Ready: func(ctx context.Context, pid int) error { return tools.RedisIs(ctx, addr, pid) },
	}
}

// startMembers starts the members of a cluster concurrently, each until its
// readiness probe passes; when one fails, every one is killed again.
func startMembers(members []*proc.Process) error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	return proc.StartAll(ctx, members)
}

// killMember kills the member of members whose address is addr, and reports
// whether there was one. The member stays down.
func killMember(members []*proc.Process, addr string) bool {
	for _, m := range members {
		if m.Addr == addr {
			m.Kill()
			return true
		}
	}
	return false
}

// cleanupMembers kills every member when the test ends and prints their logs if
// it failed.
func cleanupMembers(t testing.TB, members func() []*proc.Process) {
	t.Cleanup(func() {
		ms := members()
		proc.KillAll(ms)
		logOnFailure(t, ms...)
	})
}

// withTimeout runs f with a context bounded by d.
func withTimeout(d time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f(ctx)
}

// memberDir makes dir/name and returns it.
func memberDir(t testing.TB, dir, name string) string {
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}
