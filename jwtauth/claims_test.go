package jwtauth

import (
	"context"
	"crypto/sha256"
	"slices"
	"testing"
)

func TestRolesClaim(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	cases := []struct {
		name       string
		rolesClaim string
		claims     map[string]any
		want       []string
	}{
		{"array", "", map[string]any{"roles": []any{"admin", "reader"}}, []string{"admin", "reader"}},
		{"array with non-strings", "roles", map[string]any{"roles": []any{"admin", 7, nil, "", map[string]any{"x": 1}, "ops"}}, []string{"admin", "ops"}},
		{"OAuth scope string", "scope", map[string]any{"scope": "read:users  write:users\tadmin"}, []string{"read:users", "write:users", "admin"}},
		{"single role string", "role", map[string]any{"role": "admin"}, []string{"admin"}},
		{"Keycloak realm roles", "realm_access.roles", map[string]any{"realm_access": map[string]any{"roles": []any{"offline_access", "admin"}}}, []string{"offline_access", "admin"}},
		{"deep path", "resource_access.gateway.roles", map[string]any{"resource_access": map[string]any{"gateway": map[string]any{"roles": []any{"ops"}}}}, []string{"ops"}},
		{"dotted name wins over path", "https://example.com/roles", map[string]any{"https://example.com/roles": []any{"ns"}}, []string{"ns"}},
		{"path through a non-object", "realm_access.roles", map[string]any{"realm_access": "nope"}, nil},
		{"missing", "", map[string]any{}, nil},
		{"number", "", map[string]any{"roles": 5}, nil},
		{"object", "", map[string]any{"roles": map[string]any{"admin": true}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, Provider{Secret: k.secret, RolesClaim: tc.rolesClaim, Now: clk.Now})
			c, err := v.Verify(context.Background(), jws(t, hdr("HS256"), claimsAt(tc.claims), hsSigner(sha256.New, k.secret)))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Roles(); !slices.Equal(got, tc.want) {
				t.Fatalf("Roles = %q, want %q", got, tc.want)
			}
			for _, r := range tc.want {
				if !c.HasAnyRole([]string{"nobody", r}) {
					t.Errorf("HasAnyRole(nobody, %s) = false", r)
				}
			}
			if c.HasAnyRole([]string{"nobody", "root"}) {
				t.Error("HasAnyRole matched a role the token lacks")
			}
			if !c.HasAnyRole(nil) {
				t.Error("HasAnyRole(nil) = false: no requirement must pass")
			}
		})
	}
}

func TestClaim(t *testing.T) {
	c := newClaims(map[string]any{
		"sub":     "user-1",
		"tenant":  "acme",
		"n":       float64(42),
		"neg":     float64(-7),
		"big":     float64(1 << 60),
		"pi":      3.25,
		"admin":   true,
		"off":     false,
		"empty":   "",
		"null":    nil,
		"obj":     map[string]any{"id": "x", "deep": map[string]any{"n": float64(3)}},
		"list":    []any{"a", float64(2), true},
		"objlist": []any{"a", map[string]any{}},
		"a.b":     "dotted-key",
		"a":       map[string]any{"b": "path"},
	}, "roles")
	cases := []struct {
		name, want string
		ok         bool
	}{
		{"sub", "user-1", true},
		{"tenant", "acme", true},
		{"n", "42", true},
		{"neg", "-7", true},
		{"big", "1.152921504606847e+18", true},
		{"pi", "3.25", true},
		{"admin", "true", true},
		{"off", "false", true},
		{"empty", "", true},
		{"null", "", false},
		{"obj", "", false},
		{"obj.id", "x", true},
		{"obj.deep.n", "3", true},
		{"obj.missing", "", false},
		{"obj.id.more", "", false},
		{"list", "a,2,true", true},
		{"objlist", "", false},
		{"a.b", "dotted-key", true},
		{"missing", "", false},
		{"", "", false},
		{".", "", false},
	}
	for _, tc := range cases {
		got, ok := c.Claim(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Claim(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if c.Subject != "user-1" {
		t.Errorf("Subject %q", c.Subject)
	}
}
