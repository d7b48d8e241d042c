package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserPath finds Debian's chromium; scripts/install-tools.sh installs it. A missing
// browser fails the test (it never skips).
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: run scripts/install-tools.sh (it installs Debian's chromium)")
	return ""
}

// TestDashboardInBrowser loads /ui/ in a real headless chromium from a gateway with two
// services, one of whose breakers the test opens, and checks what the page shows.
func TestDashboardInBrowser(t *testing.T) {
	ok := backend(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	ok2 := backend(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	failing := backend(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	gw := startGateway(t, fmt.Sprintf(`
rate_limit "per_client" {
  requests = 100
  period   = "1m"
  burst    = 20
  store    = "memory"
}
service "users" {
  instance {
    address = %q
  }
  instance {
    address = %q
    weight  = 3
  }
}
service "orders" {
  instance {
    address = %q
  }
  circuit_breaker {
    failure_threshold = 1
    open_timeout      = "1h"
  }
}
route "get-user" {
  methods    = ["GET"]
  path       = "/users/:id"
  service    = "users"
  rate_limit = "per_client"
}
route "list-orders" {
  path    = "/orders"
  service = "orders"
}
`, hostOf(ok), hostOf(ok2), hostOf(failing)), nil)
	admin := httptest.NewServer(gw.AdminHandler())
	defer admin.Close()

	// One failure opens the orders instance's breaker.
	if resp, _ := get(t, gw.URL+"/orders"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("orders: status %d", resp.StatusCode)
	}
	_, body := get(t, admin.URL+"/admin/services")
	var svcs []ServiceInfo
	if err := json.Unmarshal([]byte(body), &svcs); err != nil || len(svcs) != 2 || svcs[1].Instances[0].Breaker != "open" {
		t.Fatalf("admin services: %v %s", err, body)
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browserPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.NoFirstRun, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	// The first Run starts the browser and must not carry a timeout; later steps do.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	step, stepCancel := context.WithTimeout(ctx, 60*time.Second)
	defer stepCancel()
	if err := chromedp.Do(step,
		chromedp.Navigate(admin.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`body[data-loaded="true"] #services tbody tr`)),
	); err != nil {
		t.Fatalf("dashboard did not render: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(step, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	routes := text("#routes tbody")
	for _, want := range []string{"get-user", "list-orders", "/users/:id", "GET"} {
		mustContain(t, routes, want)
	}
	mustContain(t, text(`#services tr[data-service="users"] .count`), "2 instances, 2 healthy")
	mustContain(t, text(`#services tr[data-service="orders"] .count`), "1 instance, 1 healthy")
	mustContain(t, text(`#services tr[data-service="orders"] td.breaker`), "open")
	mustContain(t, text(`#services tr[data-service="users"] td.breaker`), "none")
	mustContain(t, text("#ratelimits tbody"), "per_client")
	if n := text("#n-open"); n != "1" {
		t.Errorf("open breakers card shows %q, want 1", n)
	}
	// The gateway is served by the test's front server, not Run: /readyz says starting.
	if s := text("#ready"); s != "starting" {
		t.Errorf("readiness badge %q, want the /readyz reason", s)
	}

	png, err := chromedp.Run(step, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("DASHBOARD_SCREENSHOT_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "dashboard.png"), png, 0o644)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if !strings.HasPrefix(string(png), "\x89PNG") {
		t.Errorf("screenshot is not a PNG")
	}

	// The page keeps refreshing from the admin JSON.
	first := text("#updated")
	if _, err := chromedp.Run(step, chromedp.Poll[bool](fmt.Sprintf(`document.getElementById("updated").textContent !== %q`, first), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Errorf("page did not refresh: %v", err)
	}
}
