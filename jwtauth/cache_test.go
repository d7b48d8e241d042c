package jwtauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"
)

func TestVerifiedTokenCache(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	ctx := context.Background()
	v := newVerifier(t, Provider{Name: "hs", Secret: k.secret, Algorithms: []string{"HS256"}, Now: clk.Now})
	tok := jws(t, hdr("HS256"), claimsAt(map[string]any{"exp": t0.Add(45 * time.Second).Unix()}), hsSigner(sha256.New, k.secret))

	first, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(ctx, tok)
	if err != nil || second != first {
		t.Fatalf("second verification: %v, same claims %v", err, second == first)
	}
	// Trusted for at most CacheTTL (30s), then verified again.
	clk.Advance(31 * time.Second)
	third, err := v.Verify(ctx, tok)
	if err != nil || third == first {
		t.Fatalf("after CacheTTL: %v, reused %v", err, third == first)
	}
	// Never past its expiry, cached or not.
	clk.Advance(15 * time.Second)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	// A forged token is never served from the cache.
	bad := jws(t, hdr("HS256"), claimsAt(nil), hsSigner(sha256.New, []byte("another-secret-that-is-32-bytes-long!")))
	for i := 0; i < 2; i++ {
		if _, err := v.Verify(ctx, bad); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("forged token, try %d: %v", i, err)
		}
	}
}

func TestTokenCacheBounded(t *testing.T) {
	c := newTokenCache(3)
	until := time.Unix(100, 0)
	for _, tok := range []string{"a", "b", "c", "d", "e"} {
		c.put(tok, &Claims{Subject: tok}, until)
	}
	if len(c.m) != 3 {
		t.Fatalf("%d entries, want at most 3", len(c.m))
	}
	if got, ok := c.get("e", time.Unix(99, 0)); !ok || got.Subject != "e" {
		t.Fatal("newest entry missing")
	}
	if _, ok := c.get("e", until); ok {
		t.Fatal("entry trusted at its until time")
	}
	if newTokenCache(-1) != nil {
		t.Fatal("negative size must disable the cache")
	}
}
