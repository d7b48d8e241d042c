package gateway

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestRequestPathTakesNoReloadLock: the request path reaches the reloadable state
// through one atomic load, never through the lock a reload holds while it builds and
// swaps. With that lock held (as by a reload that is slow to build), requests keep
// being answered; a reload waiting on it swaps once it is free, and the next request
// sees the new routes.
func TestRequestPathTakesNoReloadLock(t *testing.T) {
	up := backend(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "up:", r.URL.Path) })
	const conf = `
service "s" {
  instance {
    address = %q
  }
}
route "a" {
  path    = "/a"
  service = "s"
}
%s`
	gw := startGateway(t, fmt.Sprintf(conf, hostOf(up), ""), nil)

	gw.reload.mu.Lock() // what a reload holds from its start to its swap
	reloaded := make(chan error, 1)
	go func() {
		reloaded <- gw.ReloadConfig(parseConfig(t, fmt.Sprintf(conf, hostOf(up), "route \"b\" {\n  path = \"/b\"\n  service = \"s\"\n}\n"), nil))
	}()
	for i := range 50 {
		resp, body := get(t, gw.URL+"/a") // fails the test after 10 s if it waited for the lock
		if resp.StatusCode != 200 || body != "up:/a" {
			t.Fatalf("request %d with the reload lock held: status %d body %q", i, resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, gw.URL+"/b"); resp.StatusCode != 404 {
		t.Fatalf("/b before the reload swapped: status %d, want 404", resp.StatusCode)
	}
	select {
	case err := <-reloaded:
		t.Fatalf("reload finished while its lock was held: %v", err)
	default:
	}
	gw.reload.mu.Unlock()
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("reload did not finish once its lock was free")
	}
	if resp, body := get(t, gw.URL+"/b"); resp.StatusCode != 200 || body != "up:/b" {
		t.Fatalf("/b after the reload: status %d body %q", resp.StatusCode, body)
	}
}
