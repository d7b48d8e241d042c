package tools

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/infinityxone/gateway/internal/proc"
)

// The readiness probes of the servers that internal/testenv, the local stack and
// bench/e2e start with internal/proc (as proc.Process.Ready). Each one also makes
// sure that the server answering is the one just started: another process that
// took the port meanwhile is reported as proc.ErrPortInUse.

// RedisIs returns nil once the redis-server (or sentinel) at addr answers PING and
// INFO server with process_id pid. It speaks RESP itself: a sentinel refuses some
// of what a client library sends when it connects.
func RedisIs(ctx context.Context, addr string, pid int) error {
	conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(2 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"); err != nil {
		return err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	line, err = br.ReadString('\n')
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
	if err != nil || !strings.HasPrefix(line, "$") {
		return fmt.Errorf("INFO answered %q", strings.TrimSpace(line))
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return err
	}
	for l := range strings.SplitSeq(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(l, "process_id:"); ok {
			if v != strconv.Itoa(pid) {
				return fmt.Errorf("%w: another redis-server (pid %s) answers on %s", proc.ErrPortInUse, v, addr)
			}
			return nil
		}
	}
	return errors.New("INFO server has no process_id")
}

// ConsulAgentIs returns nil once the Consul agent at addr (HTTP) answers with the
// node name node.
func ConsulAgentIs(ctx context.Context, client *http.Client, addr, node string) error {
	var self struct{ Config struct{ NodeName string } }
	if err := GetJSON(ctx, client, "http://"+addr+"/v1/agent/self", &self); err != nil {
		return err
	}
	if self.Config.NodeName != node {
		return fmt.Errorf("%w: agent %q answers on %s", proc.ErrPortInUse, self.Config.NodeName, addr)
	}
	return nil
}

// ConsulServerReady returns nil once the single-server datacenter at addr is
// ready for services: the agent is node (ConsulAgentIs), it knows a leader, and
// its node is in the catalog with serfHealth passing.
func ConsulServerReady(ctx context.Context, client *http.Client, addr, node string) error {
	if err := ConsulAgentIs(ctx, client, addr, node); err != nil {
		return err
	}
	var leader string
	if err := GetJSON(ctx, client, "http://"+addr+"/v1/status/leader", &leader); err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	var checks []struct{ CheckID, Status string }
	if err := GetJSON(ctx, client, "http://"+addr+"/v1/health/node/"+url.PathEscape(node), &checks); err != nil {
		return err
	}
	for _, c := range checks {
		if c.CheckID == "serfHealth" && c.Status == "passing" {
			return nil
		}
	}
	return errors.New("node not yet in the catalog with serfHealth passing")
}
