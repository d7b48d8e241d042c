package gateway

import (
	"net/http"
	"testing"
)

// Host precedence through the real pipeline: for the same method and path, a route
// naming the request's host wins over a wildcard host, which wins over a route without
// hosts; a host's route that does not allow the method leaves it to the next group; a
// method no group allows is 405 with the union in Allow.
func TestHostPrecedenceEndToEnd(t *testing.T) {
	exact, wild, none := echoBackend(t, "exact"), echoBackend(t, "wild"), echoBackend(t, "none")
	src := `
gateway { address = "127.0.0.1:0" }
service "exact" {
  instance {
    address = env("EXACT")
  }
}
service "wild" {
  instance {
    address = env("WILD")
  }
}
service "none" {
  instance {
    address = env("NONE")
  }
}
route "default" {
  path    = "/p"
  methods = ["GET", "DELETE"]
  service = "none"
}
route "wildcard" {
  hosts   = ["*.example.test"]
  methods = ["GET", "PUT"]
  path    = "/p"
  service = "wild"
}
route "exact" {
  hosts   = ["a.example.test"]
  methods = ["GET", "POST"]
  path    = "/p"
  service = "exact"
}
`
	g := startGateway(t, src, map[string]string{"EXACT": hostOf(exact.Server), "WILD": hostOf(wild.Server), "NONE": hostOf(none.Server)})
	cases := []struct {
		host, method string
		status       int
		backend      string // for 200
		allow        string // for 405
	}{
		{"a.example.test", "GET", 200, "exact", ""},
		{"A.Example.Test:8443", "GET", 200, "exact", ""},
		{"b.example.test", "GET", 200, "wild", ""},
		{"example.test", "GET", 200, "none", ""},
		{"other.test", "GET", 200, "none", ""},
		{"a.example.test", "POST", 200, "exact", ""},
		{"a.example.test", "PUT", 200, "wild", ""},
		{"a.example.test", "DELETE", 200, "none", ""},
		{"a.example.test", "PATCH", 405, "", "DELETE, GET, HEAD, POST, PUT"},
		{"b.example.test", "POST", 405, "", "DELETE, GET, HEAD, PUT"},
		{"other.test", "PUT", 405, "", "DELETE, GET, HEAD"},
	}
	for _, c := range cases {
		resp, body := do(t, c.method, g.URL+"/p", "", "Host", c.host)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s /p: status %d, want %d (%s)", c.host, c.method, resp.StatusCode, c.status, body)
			continue
		}
		switch c.status {
		case http.StatusOK:
			if s := decodeSeen(t, body); s.Backend != c.backend {
				t.Errorf("%s %s /p: served by %q, want %q", c.host, c.method, s.Backend, c.backend)
			}
		case http.StatusMethodNotAllowed:
			if got := resp.Header.Get("Allow"); got != c.allow {
				t.Errorf("%s %s /p: Allow %q, want %q", c.host, c.method, got, c.allow)
			}
			mustContain(t, body, `"method_not_allowed"`)
		}
	}
}
