package main

import (
	"io"
	"strings"
	"testing"
)

// TestUsage covers the command line only; TestStack in internal/stack runs the stack.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		code    int
		wantErr string
	}{
		{[]string{"-h"}, 0, "-gateways"},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected arguments"},
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
