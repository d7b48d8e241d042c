package jwtauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMint(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	tok, err := Mint(k.secret, MintOptions{Subject: "alice", Roles: []string{"admin", "reader"}, TTL: 30 * time.Minute,
		Issuer: "infinity-x-one", Audience: []string{"api"}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	// Checked by hand first: header, HMAC-SHA256 over the signing input, claims.
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%d segments", len(parts))
	}
	var header, claims map[string]any
	decode := func(seg string, into any) {
		raw, err := b64u.DecodeString(seg)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, into); err != nil {
			t.Fatal(err)
		}
	}
	decode(parts[0], &header)
	decode(parts[1], &claims)
	if header["alg"] != "HS256" {
		t.Errorf("header %v", header)
	}
	mac := hmac.New(sha256.New, k.secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if sig, _ := b64u.DecodeString(parts[2]); !hmac.Equal(sig, mac.Sum(nil)) {
		t.Error("signature is not HMAC-SHA256 with the secret")
	}
	want := map[string]any{"sub": "alice", "iss": "infinity-x-one", "aud": "api",
		"iat": float64(t0.Unix()), "exp": float64(t0.Add(30 * time.Minute).Unix())}
	for name, v := range want {
		if claims[name] != v {
			t.Errorf("claim %s = %v, want %v", name, claims[name], v)
		}
	}
	if roles, _ := claims["roles"].([]any); len(roles) != 2 || roles[0] != "admin" || roles[1] != "reader" {
		t.Errorf("roles %v", claims["roles"])
	}

	// And it passes a verifier configured like the gateway's.
	v := newVerifier(t, Provider{Secret: k.secret, Issuer: "infinity-x-one", Audience: []string{"api"}, Now: clk.Now})
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "alice" || !slices.Equal(c.Roles(), []string{"admin", "reader"}) {
		t.Errorf("claims %+v roles %v", c, c.Roles())
	}
	clk.Advance(31 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrExpired) {
		t.Errorf("after TTL: %v", err)
	}
}

func TestMintOptions(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	tok, err := Mint(k.secret, MintOptions{Audience: []string{"a", "b"}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := b64u.DecodeString(strings.Split(tok, ".")[1])
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["exp"] != float64(t0.Add(DefaultMintTTL).Unix()) {
		t.Errorf("default TTL: exp %v", claims["exp"])
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 2 {
		t.Errorf("aud %v", claims["aud"])
	}
	for _, name := range []string{"sub", "roles", "iss"} {
		if _, ok := claims[name]; ok {
			t.Errorf("claim %s present though not asked for", name)
		}
	}
	if _, err := Mint([]byte("short"), MintOptions{}); !errors.Is(err, ErrWeakSecret) {
		t.Errorf("short secret: %v", err)
	}
	if _, err := Mint(k.secret, MintOptions{TTL: -time.Second}); err == nil {
		t.Error("negative TTL accepted")
	}
}
