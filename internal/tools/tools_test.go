package tools

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBinaryLookup(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "consul")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		env        string
		candidates []string
		path       string
		want       string // "" means an error is expected
		wantErr    string
	}{
		{name: "env wins", env: fake, candidates: []string{"/nonexistent/consul"}, want: fake},
		{name: "env names a missing file", env: filepath.Join(dir, "nope"), wantErr: "nope"},
		{name: "cache dir", candidates: []string{filepath.Join(dir, "missing"), fake}, want: fake},
		{name: "PATH", path: dir, want: fake},
		{name: "missing everywhere", path: t.TempDir(), candidates: []string{"/nonexistent/consul"}, wantErr: "make tools"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TESTENV_FAKE_BIN", tt.env)
			t.Setenv("PATH", tt.path)
			got, err := Find("TESTENV_FAKE_BIN", "consul", tt.candidates...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Find() = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Find() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestToolsDir(t *testing.T) {
	t.Setenv("GATEWAY_TOOLS", "/opt/tools")
	if got := Dir(); got != "/opt/tools" {
		t.Fatalf("Dir() = %q, want /opt/tools", got)
	}
	t.Setenv("GATEWAY_TOOLS", "")
	t.Setenv("HOME", "/home/x")
	if got := Dir(); got != "/home/x/.cache/gateway-tools" {
		t.Fatalf("Dir() = %q, want /home/x/.cache/gateway-tools", got)
	}
}
