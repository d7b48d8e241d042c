package router

import (
	"path"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"", "/", true},
		{"/", "/", true},
		{"/api/users/1", "/api/users/1", true},
		{"/api/./users//1", "/api/users/1", true},
		{"/api/users/1/", "/api/users/1/", true}, // trailing slash kept
		{"/api/users//", "/api/users/", true},
		{"//", "/", true},
		{"///a", "/a", true},
		{"/a/b/..", "/a/", true}, // RFC 3986: a final dot segment leaves a slash
		{"/a/b/.", "/a/b/", true},
		{"/a/b/../c", "/a/c", true},
		{"/a/..", "/", true},
		{"/.", "/", true},
		{"/..", "", false},
		{"/api/../../etc", "", false},
		{"/a/b/../../..", "", false},
		{"/a/b/../../../c", "", false},
		{"/%2e%2e", "", false},
		{"/a/%2e%2e/b", "/b", true},
		{"/a/%2E/b", "/a/b", true},
		{"/a/.%2e/.%2E/x", "", false},
		{"/%41%62c", "/Abc", true},
		{"/%7euser/%5F%2D%2E", "/~user/_-.", true},
		{"/a%2fb", "/a%2Fb", true},
		{"/a%2Fb/../c", "/c", true},
		{"/a/..%2F..%2Fetc", "/a/..%2F..%2Fetc", true}, // an encoded slash never splits
		{"/a%2F..", "/a%2F..", true},
		{"/a%2f%2e%2e", "/a%2F..", true},
		{"/sp%20ace", "/sp%20ace", true},
		{"/sp%2aace", "/sp%2Aace", true},
		{"/sp ace", "/sp%20ace", true},
		{"/café", "/caf%C3%A9", true},
		{"/a\\b", "/a%5Cb", true},
		{"/a?b#c", "/a%3Fb%23c", true},
		{"/a%25b", "/a%25b", true},
		{"/a%2541", "/a%2541", true},
		{"/!$&'()*+,;=:@", "/!$&'()*+,;=:@", true},
		{"/%zz", "", false},
		{"/%4", "", false},
		{"/a%", "", false},
		{"/a%4/", "", false},
		{"/%g0", "", false},
		{"a/b", "", false},
		{"*", "", false},
	}
	for _, c := range cases {
		got, ok := Normalize(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// A path that is already normal comes back as the same string, without allocating.
func TestNormalizeCleanIsIdentity(t *testing.T) {
	for _, p := range []string{"/", "/a", "/a/", "/api/users/42/orders", "/a%2Fb", "/caf%C3%A9", "/a/.../b", "/.a/b."} {
		got, ok := Normalize(p)
		if !ok || got != p {
			t.Errorf("Normalize(%q) = %q, %v", p, got, ok)
		}
		if n := testing.AllocsPerRun(100, func() { Normalize(p) }); n != 0 {
			t.Errorf("Normalize(%q): %v allocs, want 0", p, n)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"", "/", "/api/./users//1", "/api/../../etc", "/%2e%2e", "/a%2fb/..", "/a/b/..",
		"//a//b//", "/%41", "/café", "/%zz", "/a/.%2E/", "/a/b/c/../../d/./e/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := Normalize(in)
		if !ok {
			if out != "" {
				t.Fatalf("Normalize(%q) = %q with ok=false", in, out)
			}
			return
		}
		if out == "" || out[0] != '/' {
			t.Fatalf("Normalize(%q) = %q: does not start with /", in, out)
		}
		for _, bad := range []string{"//", "/../", "/./"} {
			if strings.Contains(out, bad) {
				t.Fatalf("Normalize(%q) = %q contains %q", in, out, bad)
			}
		}
		if strings.HasSuffix(out, "/..") || strings.HasSuffix(out, "/.") {
			t.Fatalf("Normalize(%q) = %q ends in a dot segment", in, out)
		}
		again, ok2 := Normalize(out)
		if !ok2 || again != out {
			t.Fatalf("not idempotent: Normalize(%q) = %q, Normalize(%q) = %q, %v", in, out, out, again, ok2)
		}
		if !isNormal(out) {
			t.Fatalf("Normalize(%q) = %q is not normal by isNormal", in, out)
		}
		// On inputs of plain letters, dots and slashes, the segments agree with path.Clean.
		if strings.Trim(in, "abc./") == "" && in != "" && in[0] == '/' {
			if want := path.Clean(in); strings.TrimSuffix(out, "/") != strings.TrimSuffix(want, "/") {
				t.Fatalf("Normalize(%q) = %q, path.Clean = %q", in, out, want)
			}
		}
	})
}
