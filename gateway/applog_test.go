package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/infinityxone/gateway/gateway/config"
)

// TestAppLogFormats writes through a real pipe (what stderr is under a collector) and
// checks that json gives one parsable object a line and text carries no ANSI codes.
func TestAppLogFormats(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			l := NewAppLogger(config.Log{Level: "info", AppFormat: format}, w)
			l.Named("consul").Warn("watch failed", "service", "users", "error", "connection refused")
			l.Debug("not at info level")
			l.Info("listening", "address", "http://127.0.0.1:8080")
			w.Close()
			var out bytes.Buffer
			if _, err := out.ReadFrom(r); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(out.Bytes(), []byte("\x1b[")) {
				t.Fatalf("ANSI escape codes on a pipe:\n%q", out.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 2 {
				t.Fatalf("want 2 lines (debug filtered), got %d:\n%s", len(lines), out.String())
			}
			if format == "text" {
				mustContain(t, lines[0], "[WARN]  gateway.consul: watch failed: service=users")
				return
			}
			sc := bufio.NewScanner(strings.NewReader(out.String()))
			var recs []map[string]any
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("line is not JSON: %q: %v", sc.Text(), err)
				}
				recs = append(recs, m)
			}
			if recs[0]["@level"] != "warn" || recs[0]["@module"] != "gateway.consul" || recs[0]["@message"] != "watch failed" ||
				recs[0]["service"] != "users" || recs[0]["@timestamp"] == nil {
				t.Errorf("first record: %v", recs[0])
			}
			if recs[1]["@level"] != "info" || recs[1]["address"] != "http://127.0.0.1:8080" {
				t.Errorf("second record: %v", recs[1])
			}
		})
	}
}

func TestAppLogColourOnlyOnTerminal(t *testing.T) {
	var buf bytes.Buffer
	if c := colorFor(&buf, "text"); c != 0 {
		t.Errorf("buffer: colour option %v, want off", c)
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if c := colorFor(w, "text"); c != 0 {
		t.Errorf("pipe: colour option %v, want off", c)
	}
}
