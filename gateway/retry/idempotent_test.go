package retry

import (
	"net/http"
	"testing"
)

func TestIdempotent(t *testing.T) {
	key := http.Header{"Idempotency-Key": {"8e03978e-40d5-43e8-bc93-6894a57f9324"}}
	xkey := http.Header{"X-Idempotency-Key": {"abc"}}
	empty := http.Header{"Idempotency-Key": {""}}
	tests := []struct {
		method   string
		header   http.Header
		allowKey bool
		want     bool
	}{
		{"GET", nil, false, true},
		{"HEAD", nil, false, true},
		{"OPTIONS", nil, false, true},
		{"TRACE", nil, false, true},
		{"PUT", nil, false, true},
		{"DELETE", nil, false, true},
		{"GET", key, true, true},
		{"POST", nil, false, false},
		{"POST", nil, true, false},
		{"POST", key, false, false},
		{"POST", key, true, true},
		{"POST", xkey, true, true},
		{"POST", empty, true, false},
		{"PATCH", key, false, false},
		{"PATCH", key, true, true},
		{"PATCH", http.Header{}, true, false},
		{"CONNECT", nil, false, false},
		{"CONNECT", key, true, false},
		{"PROPFIND", key, true, false},
		{"get", nil, false, false}, // methods are case-sensitive
		{"", nil, false, false},
	}
	for _, tt := range tests {
		if got := Idempotent(tt.method, tt.header, tt.allowKey); got != tt.want {
			t.Errorf("Idempotent(%q, %v, %v) = %v, want %v", tt.method, tt.header, tt.allowKey, got, tt.want)
		}
	}
}

func TestIdempotentZeroAllocs(t *testing.T) {
	h := http.Header{"Idempotency-Key": {"k"}, "Content-Type": {"application/json"}}
	if a := testing.AllocsPerRun(1000, func() { Idempotent("POST", h, true) }); a != 0 {
		t.Fatalf("%v allocs/op, want 0", a)
	}
}
