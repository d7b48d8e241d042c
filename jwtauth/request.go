package jwtauth

import (
	"net/http"
	"strings"
)

// FromRequest extracts a bearer token: from `Authorization: Bearer TOKEN` (scheme
// case-insensitive), else from the cookie named cookie, else from the query parameter
// named query (an empty name disables that source). An Authorization header with another
// scheme (Basic, …) is not ours and is passed over. Errors: ErrMissingToken when no
// source has a token; ErrInvalidRequest for several Authorization headers, or a Bearer
// header whose token is empty or contains whitespace.
func FromRequest(r *http.Request, cookie, query string) (string, error) {
	if hs := r.Header["Authorization"]; len(hs) > 0 {
		if len(hs) > 1 {
			return "", ErrInvalidRequest
		}
		scheme, rest, _ := strings.Cut(hs[0], " ")
		if strings.EqualFold(scheme, "Bearer") {
			tok := strings.Trim(rest, " \t")
			if tok == "" || strings.ContainsAny(tok, " \t") {
				return "", ErrInvalidRequest
			}
			return tok, nil
		}
	}
	if cookie != "" {
		if c, err := r.Cookie(cookie); err == nil && c.Value != "" {
			return c.Value, nil
		}
	}
	if query != "" {
		if tok := r.URL.Query().Get(query); tok != "" {
			return tok, nil
		}
	}
	return "", ErrMissingToken
}
