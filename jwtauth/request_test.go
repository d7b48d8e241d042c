package jwtauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestFromRequest(t *testing.T) {
	cases := []struct {
		name          string
		target        string
		headers       []string // name, value pairs (repeats allowed)
		cookie, query string
		want          string
		err           error
	}{
		{"bearer", "/", []string{"Authorization", "Bearer abc.def.ghi"}, "", "", "abc.def.ghi", nil},
		{"scheme case-insensitive", "/", []string{"Authorization", "bEaReR abc"}, "", "", "abc", nil},
		{"extra spaces", "/", []string{"Authorization", "Bearer    abc  "}, "", "", "abc", nil},
		{"header wins over cookie and query", "/?access_token=q", []string{"Authorization", "Bearer h", "Cookie", "tok=c"}, "tok", "access_token", "h", nil},
		{"cookie", "/", []string{"Cookie", "other=1; tok=c"}, "tok", "access_token", "c", nil},
		{"cookie wins over query", "/?access_token=q", []string{"Cookie", "tok=c"}, "tok", "access_token", "c", nil},
		{"query", "/x?a=1&access_token=q", nil, "tok", "access_token", "q", nil},
		{"basic auth is not ours", "/?access_token=q", []string{"Authorization", "Basic dXNlcjpwYXNz"}, "", "access_token", "q", nil},
		{"basic auth only", "/", []string{"Authorization", "Basic dXNlcjpwYXNz"}, "", "", "", ErrMissingToken},
		{"nothing", "/", nil, "tok", "access_token", "", ErrMissingToken},
		{"cookie not configured", "/", []string{"Cookie", "tok=c"}, "", "", "", ErrMissingToken},
		{"query not configured", "/?access_token=q", nil, "", "", "", ErrMissingToken},
		{"empty cookie", "/", []string{"Cookie", "tok="}, "tok", "", "", ErrMissingToken},
		{"bearer without token", "/", []string{"Authorization", "Bearer"}, "", "", "", ErrInvalidRequest},
		{"bearer with blank token", "/", []string{"Authorization", "Bearer   "}, "", "", "", ErrInvalidRequest},
		{"token with a space", "/", []string{"Authorization", "Bearer a b"}, "", "", "", ErrInvalidRequest},
		{"two authorization headers", "/", []string{"Authorization", "Bearer a", "Authorization", "Bearer b"}, "", "", "", ErrInvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			for i := 0; i+1 < len(tc.headers); i += 2 {
				r.Header.Add(tc.headers[i], tc.headers[i+1])
			}
			got, err := FromRequest(r, tc.cookie, tc.query)
			if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("FromRequest = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}
