package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/infinityxone/gateway/internal/testenv"
)

// hungIDP is the test IdP behind a fault proxy that accepts connections, passes the
// request on and never passes the answer back.
func hungIDP(t *testing.T, d *idp) *testenv.FaultProxy {
	t.Helper()
	proxy := testenv.NewFaultProxy(t, d.srv.Listener.Addr().String())
	proxy.Stall()
	return proxy
}

// verifyAll runs n concurrent verifications of the tokens tok(i) and returns each one's
// error and how long it took. While they run, meanwhile is called (if not nil).
func verifyAll(v *Verifier, n int, tok func(i int) string, meanwhile func()) ([]error, []time.Duration) {
	errs := make([]error, n)
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, errs[i] = v.Verify(context.Background(), tok(i)) // no deadline, as a request's
			took[i] = time.Since(start)
		}()
	}
	if meanwhile != nil {
		meanwhile()
	}
	wg.Wait()
	return errs, took
}

// TestJWKSHungEndpoint: with nothing cached and an IdP that never answers, 50 concurrent
// requests make one fetch and all share its failure: every one is refused (ErrNoKeys,
// a 401) when that fetch times out, not one fetch timeout after another. The clock
// passes MinRefetchInterval while the fetch hangs (as when the fetch timeout equals the
// refetch interval, the defaults): the waiters still do not fetch again. Later requests
// within MinRefetchInterval of the failure are refused at once, without a fetch.
func TestJWKSHungEndpoint(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey))
	proxy := hungIDP(t, d)
	const fetchTimeout = 300 * time.Millisecond
	p := d.provider(clk)
	p.JWKSURL = proxy.URL() + "/jwks.json"
	p.FetchTimeout = fetchTimeout
	p.MinRefetchInterval = 10 * time.Second
	v := newVerifier(t, p)
	tok := rsToken(t, "k1", k.rsa)

	errs, took := verifyAll(v, 50, func(int) string { return tok }, func() {
		waitFor(t, func() bool { return d.hits.Load() >= 1 }) // the fetch reached the IdP
		clk.Advance(p.MinRefetchInterval + time.Second)
	})
	for i, err := range errs {
		if !errors.Is(err, ErrNoKeys) {
			t.Fatalf("request %d: %v, want ErrNoKeys", i, err)
		}
		if code, _ := Challenge(err); code != CodeInvalidToken {
			t.Fatalf("request %d: challenge %q, want invalid_token (401)", i, code)
		}
		// Serialised fetches would take up to 50 × 300 ms; the bound is generous so
		// a busy machine cannot fail it, and still far below that.
		if took[i] > 10*fetchTimeout {
			t.Errorf("request %d answered after %v; the fetch timeout is %v", i, took[i], fetchTimeout)
		}
	}
	wantHits(t, d, 1)

	// The endpoint is known to be down: refused at once, no fetch.
	errs, _ = verifyAll(v, 20, func(int) string { return tok }, nil)
	for i, err := range errs {
		if !errors.Is(err, ErrNoKeys) {
			t.Fatalf("request %d after the failed fetch: %v", i, err)
		}
	}
	wantHits(t, d, 1)

	// Once MinRefetchInterval has passed, one request retries; when the IdP answers
	// again, the keys are used.
	proxy.Resume()
	clk.Advance(p.MinRefetchInterval + time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the IdP recovered: %v", err)
	}
	wantHits(t, d, 2)
}

// TestJWKSHungEndpointUnknownKids: with keys cached, tokens naming unknown kids (an
// attacker's, or the first after a rotation) during a hang cost one fetch, and tokens
// with a known kid never wait for it.
func TestJWKSHungEndpointUnknownKids(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey))
	proxy := testenv.NewFaultProxy(t, d.srv.Listener.Addr().String())
	p := d.provider(clk)
	p.JWKSURL = proxy.URL() + "/jwks.json"
	p.FetchTimeout = 300 * time.Millisecond
	p.MinRefetchInterval = 10 * time.Second
	v := newVerifier(t, p)
	good := rsToken(t, "k1", k.rsa)
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	wantHits(t, d, 1)
	proxy.Stall()
	clk.Advance(p.MinRefetchInterval + time.Second)
	evil := make([]string, 50)
	for i := range evil {
		evil[i] = rsToken(t, fmt.Sprintf("evil-%d", i), k.rsa)
	}

	// The unknown-kid flood; while its fetch hangs, the clock passes the refetch
	// interval, and known tokens are verified without waiting for the fetch.
	errs, _ := verifyAll(v, 50, func(i int) string { return evil[i] }, func() {
		waitFor(t, func() bool { return d.hits.Load() == 2 }) // the flood's fetch reached the IdP
		clk.Advance(p.MinRefetchInterval + time.Second)
		for range 10 {
			if _, err := v.Verify(context.Background(), good); err != nil {
				t.Errorf("known kid during the hang: %v", err)
			}
		}
	})
	for i, err := range errs {
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("unknown kid %d: %v, want ErrUnknownKey", i, err)
		}
	}
	wantHits(t, d, 2)
}

// TestJWKSTokenWithoutKid: a token that names no key is tried against at most
// maxKidlessKeys keys; a JWKS with more keys for its algorithm refuses it without a
// signature check per key.
func TestJWKSTokenWithoutKid(t *testing.T) {
	k := sharedKeys()
	third, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	tok := jws(t, hdr("ES256"), claimsAt(nil), esSigner(crypto.SHA256, k.p256b))

	two := newIDP(t, jwkOf("a", &k.p256.PublicKey), jwkOf("b", &k.p256b.PublicKey))
	v := newVerifier(t, two.provider(clk, "ES256"))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("no kid, two keys: %v", err)
	}

	three := newIDP(t, jwkOf("a", &k.p256.PublicKey), jwkOf("b", &k.p256b.PublicKey), jwkOf("c", &third.PublicKey))
	v = newVerifier(t, three.provider(clk, "ES256"))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("no kid, three keys: %v, want ErrUnknownKey", err)
	}
	withKid := jws(t, hdr("ES256", "kid", "b"), claimsAt(nil), esSigner(crypto.SHA256, k.p256b))
	if _, err := v.Verify(context.Background(), withKid); err != nil {
		t.Fatalf("kid b, three keys: %v", err)
	}
}
