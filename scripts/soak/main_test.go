package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestUsage covers the command line only; a soak run is `make soak`.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		code    int
		wantErr string
	}{
		{[]string{"-h"}, 0, "-duration"},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected arguments"},
		{[]string{"-duration", "0"}, 2, "must be positive"},
	} {
		var stderr strings.Builder
		if code := run(tc.args, io.Discard, &stderr); code != tc.code {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
		}
		if !strings.Contains(stderr.String(), tc.wantErr) {
			t.Errorf("%q: stderr %q, want it to mention %q", tc.args, stderr.String(), tc.wantErr)
		}
	}
}

// TestGrowth: a steady or bounded resource passes; one that keeps rising over
// the last half fails; a single step (a restart's reconnections) passes.
func TestGrowth(t *testing.T) {
	mk := func(f func(i int) float64) []sample {
		var out []sample
		for i := 0; i < 20; i++ {
			v := f(i)
			out = append(out, sample{at: time.Duration(i) * 30 * time.Second, rss: []float64{40 << 20}, fds: []float64{v}, goroutines: []float64{30}})
		}
		return out
	}
	if p := growth(mk(func(i int) float64 { return 50 + float64(i%3) }), 1); len(p) != 0 {
		t.Errorf("steady: %v", p)
	}
	if p := growth(mk(func(i int) float64 { return 50 + 10*float64(i) }), 1); len(p) != 1 || !strings.Contains(p[0], "open fds") {
		t.Errorf("leak: %v", p)
	}
	if p := growth(mk(func(i int) float64 {
		if i == 12 {
			return 120
		}
		return 50
	}), 1); len(p) != 0 {
		t.Errorf("one spike: %v", p)
	}
	if p := growth(mk(func(int) float64 { return 50 })[:3], 1); len(p) != 1 {
		t.Errorf("too few samples: %v", p)
	}
}
