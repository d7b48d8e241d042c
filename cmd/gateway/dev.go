package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/infinityxone/gateway/gateway"
	"github.com/infinityxone/gateway/gateway/config"
	"github.com/infinityxone/gateway/jwtauth"
)

//go:embed dev.hcl
var devConfig []byte

// cmdDev serves the embedded demo config. Its backends are small HTTP servers on
// loopback, started here, whose addresses reach the config through env().
func (c *cli) cmdDev(args []string) int {
	if _, _, code, done := c.parse(args, 0); done {
		return code
	}
	stderr := c.stderr
	env := map[string]string{}
	var backends []*http.Server
	defer func() {
		for _, b := range backends {
			_ = b.Close()
		}
	}()
	for _, name := range []string{"DEV_DEMO_1", "DEV_DEMO_2", "DEV_USERS_1"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(stderr, "gateway dev:", err)
			return 1
		}
		srv := &http.Server{Handler: demoBackend(name), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		backends = append(backends, srv)
		env[name] = ln.Addr().String()
	}
	lookup := func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}
	cfg, ds := config.ParseWithEnv(map[string][]byte{"dev.hcl": devConfig}, lookup)
	if len(ds) > 0 {
		for _, d := range ds {
			fmt.Fprintln(stderr, d.String())
		}
		return 1
	}
	secret, _ := lookup("JWT_SECRET")
	if secret == "" {
		for _, j := range cfg.JWT {
			secret = j.Secret
		}
	}
	token, err := jwtauth.Mint([]byte(secret), jwtauth.MintOptions{Subject: "dev-user", Roles: []string{"reader"}, TTL: 24 * time.Hour, Issuer: "gateway-dev"})
	if err != nil {
		fmt.Fprintln(stderr, "gateway dev:", err)
		return 1
	}
	return c.serve(cfg, "", func(g *gateway.Gateway) {
		base := "http://" + g.Addr()
		fmt.Fprintf(stderr, `
  Infinity X One gateway (dev) on %[1]s   admin on http://%[2]s

  curl -i %[1]s/hello                            # RateLimit-* headers: 60 a minute
  curl -i %[1]s/api/users/42
  curl -i %[1]s/static/css/site.css
  curl -i %[1]s/api/me                           # 401: needs a token
  curl -i -H "Authorization: Bearer %[3]s" %[1]s/api/me
  curl -i -X POST %[1]s/hello                    # 405 with Allow
  curl -i %[1]s/nowhere                          # 404, JSON error
  curl -s http://%[2]s/admin/routes
  curl -s http://%[2]s/metrics | grep gateway_

`, base, g.AdminAddr(), token)
	})
}

// demoBackend answers every request with a JSON echo of what it received.
func demoBackend(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers := map[string]string{}
		keys := make([]string, 0, len(r.Header))
		for k := range r.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			headers[k] = r.Header.Get(k)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{
			"backend": name,
			"method":  r.Method,
			"path":    r.URL.Path,
			"query":   r.URL.RawQuery,
			"headers": headers,
		})
	})
}
