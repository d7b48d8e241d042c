package router

import (
	"net/url"
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
		{"/a%2Fb/c%5Cd", "/a%2Fb/c%5Cd", true}, // an encoded slash alone never splits
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

// Dot segments hidden by encoding, by an encoded separator or by parameters are dot
// segments: applied, or refused when they climb above "/". No output holds a piece
// that a backend decoding %2F, %5C or '\\' into separators, or dropping ";params",
// would read as "." or "..".
func TestNormalizeHiddenDots(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		// Encoded dots are plain dots.
		{"/a/%2e%2e/b", "/b", true},
		{"/a/%2E%2E/b", "/b", true},
		{"/a/.%2e/b", "/b", true},
		{"/a/%2e/b", "/a/b", true},
		{"/api/%2e%2e/%2e%2e/etc", "", false},
		// Encoded slashes next to dots: the segment splits, the dots apply.
		{"/api/users/..%2f..%2fapi%2fme", "/api/me", true}, // the reported bypass
		{"/api/users/..%2F..%2Fapi%2Fme", "/api/me", true},
		{"/api/users/%2e%2e%2f%2e%2e%2fapi%2fme", "/api/me", true},
		{"/api/users/..%2f..%2f..%2fetc", "", false},
		{"/a/b%2f..", "/a/", true},
		{"/a/b%2F..%2Fc", "/a/c", true},
		{"/a/%2f..%2fb", "/b", true},
		{"/a/x%2f.%2fy", "/a/x/y", true}, // a "." piece splits the segment too
		{"/a/..%2f", "/", true},
		{"/a%2f..", "/", true},
		{"/a%2f..%2f..", "", false},
		{"/a/..%2f..%2fb%2Fc/d", "", false},
		// Backslashes, raw or encoded, are separators to some backends.
		{"/a/b/..%5c..%5cc", "/c", true},
		{"/a/b/..\\..\\c", "/c", true},
		{"/a/..%5C..%5Cetc", "", false},
		{"/a/b%5Cc", "/a/b%5Cc", true}, // no dots: kept as one segment
		// Parameters after dots (servlet containers drop them): dot segments.
		{"/api/users/..;/admin", "/api/admin", true},
		{"/api/users/..;x=1/admin", "/api/admin", true},
		{"/api/users/..%3Bx/admin", "/api/admin", true},
		{"/api/.;x/me", "/api/me", true},
		{"/api/..;/..;/etc", "", false},
		{"/a/b%2F..;x%2Fc;y", "/a/c;y", true}, // other pieces keep their parameters
		// Not dot segments.
		{"/a/...", "/a/...", true},
		{"/a/..a", "/a/..a", true},
		{"/a/me;x=1", "/a/me;x=1", true},
		{"/a/;..", "/a/;..", true},
		{"/a/b;..", "/a/b;..", true},
		{"/a/%252e%252e", "/a/%252e%252e", true}, // one decoding reads "%2e%2e", not ".."
		{"/a/%2F%2F", "/a/%2F%2F", true},
	}
	for _, c := range cases {
		got, ok := Normalize(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
		if ok {
			checkNoHiddenDots(t, c.in, got)
		}
	}
}

// checkNoHiddenDots fails when out, decoded once with %2F, %5C and '\' read as
// separators and ";params" dropped, has a "." or ".." segment.
func checkNoHiddenDots(t *testing.T, in, out string) {
	t.Helper()
	dec, err := url.PathUnescape(out)
	if err != nil {
		t.Fatalf("Normalize(%q) = %q: does not decode: %v", in, out, err)
	}
	for _, seg := range strings.FieldsFunc(dec, func(r rune) bool { return r == '/' || r == '\\' }) {
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
		if seg == "." || seg == ".." {
			t.Fatalf("Normalize(%q) = %q: a decoding backend reads %q as a dot segment", in, out, dec)
		}
	}
}

// A path that is already normal comes back as the same string, without allocating.
func TestNormalizeCleanIsIdentity(t *testing.T) {
	for _, p := range []string{"/", "/a", "/a/", "/api/users/42/orders", "/a%2Fb", "/caf%C3%A9", "/a/.../b", "/.a/b.", "/a/me;x=1", "/a%2F..b/c%5C.x"} {
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
		"/api/users/..%2f..%2fapi%2fme", "/a/..;/b", "/a/..%5c..%5cb", "/a/b%2F..%3Bx%2Fc;y",
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
		checkNoHiddenDots(t, in, out)
		// On inputs of plain letters, dots and slashes, the segments agree with path.Clean.
		if strings.Trim(in, "abc./") == "" && in != "" && in[0] == '/' {
			if want := path.Clean(in); strings.TrimSuffix(out, "/") != strings.TrimSuffix(want, "/") {
				t.Fatalf("Normalize(%q) = %q, path.Clean = %q", in, out, want)
			}
		}
	})
}
