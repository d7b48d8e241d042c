// Package tools finds the server binaries that tests, the local stack and the load
// harness run: a consul agent (built by `make tools` into a cache folder) and
// redis-server; and holds their command lines and the checks that say they are
// ready. internal/proc runs them.
package tools

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Consul resolves the consul binary: $CONSUL_BIN, then Dir()/consul, then PATH.
func Consul() (string, error) {
	return Find("CONSUL_BIN", "consul", filepath.Join(Dir(), "consul"))
}

// Redis resolves redis-server: $REDIS_SERVER, then PATH.
func Redis() (string, error) { return Find("REDIS_SERVER", "redis-server") }

// Find resolves a binary: the environment variable envVar when set, then each of
// candidates that exists, then name on PATH. The error says how to install it.
func Find(envVar, name string, candidates ...string) (string, error) {
	if v := os.Getenv(envVar); v != "" {
		if _, err := os.Stat(v); err != nil {
			return "", fmt.Errorf("$%s=%s: %w", envVar, v, err)
		}
		return v, nil
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		where := append([]string{"$" + envVar}, candidates...)
		return "", fmt.Errorf("%s not found (looked at %s and PATH); run `make tools` (or `make test`, which runs it) to install it",
			name, strings.Join(where, ", "))
	}
	return p, nil
}

// Dir is where `make tools` puts the binaries it builds: $GATEWAY_TOOLS, else
// ~/.cache/gateway-tools.
func Dir() string {
	if d := os.Getenv("GATEWAY_TOOLS"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "gateway-tools")
	}
	return filepath.Join(home, ".cache", "gateway-tools")
}

// FreePorts returns n distinct loopback TCP ports that were free a moment ago; the first
// udp of them were also free for UDP (Consul's Serf gossips over both). Every listener is
// held until all ports are chosen, so the ports differ.
func FreePorts(n, udp int) ([]int, error) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, errors.New("no free loopback port found")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen on loopback: %w", err)
		}
		closers = append(closers, l)
		port := l.Addr().(*net.TCPAddr).Port
		if len(ports) < udp {
			pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				continue // UDP side taken: try another port
			}
			closers = append(closers, pc)
		}
		ports = append(ports, port)
	}
	return ports, nil
}
