package jwtauth

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// idp is a JWKS endpoint whose keys and health the test controls.
type idp struct {
	mu     sync.Mutex
	keys   []map[string]any
	status int           // 0 = 200 with the keys
	raw    string        // if set, served instead of the keys
	gate   chan struct{} // if set, each request waits for it to close
	hits   atomic.Int32
	srv    *httptest.Server
}

func newIDP(t *testing.T, keys ...map[string]any) *idp {
	d := &idp{keys: keys}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.hits.Add(1)
		d.mu.Lock()
		keys, status, raw, gate := d.keys, d.status, d.raw, d.gate
		d.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		if status != 0 {
			http.Error(w, "down", status)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		if raw != "" {
			w.Write([]byte(raw))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *idp) set(f func(d *idp)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

// provider is the IdP's provider with the verified-token cache off: these tests count
// the fetches that verifications cause (the cache has its own tests).
func (d *idp) provider(clk *clock, algs ...string) Provider {
	return Provider{Name: "idp", JWKSURL: d.srv.URL + "/jwks.json", Algorithms: algs, Now: clk.Now,
		Logger: hclog.NewNullLogger(), CacheSize: -1}
}

func wantHits(t *testing.T, d *idp, n int32) {
	t.Helper()
	if got := d.hits.Load(); got != n {
		t.Fatalf("JWKS endpoint hit %d times, want %d", got, n)
	}
}

func rsToken(t testing.TB, kid string, k *rsa.PrivateKey) string {
	h := hdr("RS256")
	if kid != "" {
		h["kid"] = kid
	}
	return jws(t, h, claimsAt(nil), rsSigner(crypto.SHA256, k))
}

func TestJWKSKeyTypes(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	d := newIDP(t, jwkOf("r1", &k.rsa.PublicKey), jwkOf("e1", &k.p256.PublicKey), jwkOf("e3", &k.p384.PublicKey),
		jwkOf("e5", &k.p521.PublicKey), jwkOf("d1", k.ed.Public()))
	v := newVerifier(t, d.provider(clk, "RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"))
	cases := []struct {
		alg, kid string
		sign     signer
	}{
		{"RS256", "r1", rsSigner(crypto.SHA256, k.rsa)},
		{"PS256", "r1", psSigner(crypto.SHA256, k.rsa)},
		{"ES256", "e1", esSigner(crypto.SHA256, k.p256)},
		{"ES384", "e3", esSigner(crypto.SHA384, k.p384)},
		{"ES512", "e5", esSigner(crypto.SHA512, k.p521)},
		{"EdDSA", "d1", edSigner(k.ed)},
	}
	for _, tc := range cases {
		t.Run(tc.alg, func(t *testing.T) {
			tok := jws(t, hdr(tc.alg, "kid", tc.kid), claimsAt(nil), tc.sign)
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
	wantHits(t, d, 1) // one fetch served them all
	// A kid that names a key of another type is no key for this alg.
	tok := jws(t, hdr("ES256", "kid", "r1"), claimsAt(nil), esSigner(crypto.SHA256, k.p256))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("ES256 token naming an RSA kid: %v", err)
	}
}

func TestJWKSUnknownKidRateLimited(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey))
	v := newVerifier(t, d.provider(clk))
	ctx := context.Background()
	if _, err := v.Verify(ctx, rsToken(t, "k1", k.rsa)); err != nil {
		t.Fatal(err)
	}
	wantHits(t, d, 1)
	// Right after a fetch, an unknown kid does not refetch.
	if _, err := v.Verify(ctx, rsToken(t, "nope", k.rsa)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
	wantHits(t, d, 1)
	clk.Advance(11 * time.Second)
	for i := range 20 { // a flood of random kids costs one fetch
		if _, err := v.Verify(ctx, rsToken(t, "nope"+string(rune('a'+i)), k.rsa)); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	wantHits(t, d, 2)
	clk.Advance(11 * time.Second)
	if _, err := v.Verify(ctx, rsToken(t, "nope", k.rsa)); !errors.Is(err, ErrUnknownKey) {
		t.Fatal(err)
	}
	wantHits(t, d, 3)
	// Known kids never refetch.
	if _, err := v.Verify(ctx, rsToken(t, "k1", k.rsa)); err != nil {
		t.Fatal(err)
	}
	wantHits(t, d, 3)
}

func TestJWKSRotation(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey))
	v := newVerifier(t, d.provider(clk))
	ctx := context.Background()
	old, next := rsToken(t, "k1", k.rsa), rsToken(t, "k2", k.rsa2)
	if _, err := v.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	// The IdP rotates: k2 replaces k1. A k2 token makes the verifier refetch.
	d.set(func(d *idp) { d.keys = []map[string]any{jwkOf("k2", &k.rsa2.PublicKey)} })
	clk.Advance(30 * time.Second)
	c, err := v.Verify(ctx, next)
	if err != nil {
		t.Fatalf("token with the rotated-in key: %v", err)
	}
	if c.Subject != "user-1" {
		t.Errorf("subject %q", c.Subject)
	}
	wantHits(t, d, 2)
	// k1 is gone from the set, so its tokens are refused (revocation works too).
	if _, err := v.Verify(ctx, old); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("token with the rotated-out key: %v", err)
	}
	// A forged k2 token (other key, same kid) is a bad signature, not a refetch.
	if _, err := v.Verify(ctx, rsToken(t, "k2", k.rsa)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged kid: %v", err)
	}
	wantHits(t, d, 2)
}

func TestJWKSPeriodicLazyRefresh(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey), jwkOf("k2", &k.rsa2.PublicKey))
	v := newVerifier(t, d.provider(clk))
	ctx := context.Background()
	if _, err := v.Verify(ctx, rsToken(t, "k2", k.rsa2)); err != nil {
		t.Fatal(err)
	}
	// k2 is revoked; the cached set still has it until the refresh interval passes.
	d.set(func(d *idp) { d.keys = d.keys[:1] })
	clk.Advance(4 * time.Minute)
	if _, err := v.Verify(ctx, rsToken(t, "k2", k.rsa2)); err != nil {
		t.Fatal(err)
	}
	wantHits(t, d, 1)
	clk.Advance(time.Minute) // now 5m old: the next request refreshes
	if _, err := v.Verify(ctx, rsToken(t, "k1", k.rsa)); err != nil {
		t.Fatal(err)
	}
	wantHits(t, d, 2)
	if _, err := v.Verify(ctx, rsToken(t, "k2", k.rsa2)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("revoked key after refresh: %v", err)
	}
}

func TestJWKSDownWithCachedKeys(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey))
	v := newVerifier(t, d.provider(clk))
	ctx := context.Background()
	tok := rsToken(t, "k1", k.rsa)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	for _, down := range []func(d *idp){
		func(d *idp) { d.status = http.StatusInternalServerError },
		func(d *idp) { d.status, d.raw = 0, `{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}` }, // nothing usable
		func(d *idp) { d.raw = `<html>` },
		func(d *idp) { d.raw = `{"keys":[]}` + strings.Repeat(" ", maxJWKSBytes) }, // over the size cap
	} {
		d.set(down)
		before := d.hits.Load()
		clk.Advance(6 * time.Minute) // stale: the request tries a refresh, which fails
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("cached key while the endpoint fails: %v", err)
		}
		wantHits(t, d, before+1)
		if _, err := v.Verify(ctx, tok); err != nil { // within MinRefetchInterval: no new try
			t.Fatal(err)
		}
		wantHits(t, d, before+1)
	}
	// Connection refused: the server is gone entirely.
	d.srv.Close()
	clk.Advance(time.Minute)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("cached key with the endpoint gone: %v", err)
	}
	if err := v.Refresh(ctx); err == nil {
		t.Fatal("Refresh against a closed server succeeded")
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("cached key after a failed Refresh: %v", err)
	}
}

func TestJWKSDownWithoutCachedKeys(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey))
	d.set(func(d *idp) { d.status = http.StatusServiceUnavailable })
	v := newVerifier(t, d.provider(clk))
	ctx := context.Background()
	tok := rsToken(t, "k1", k.rsa)
	for range 3 {
		_, err := v.Verify(ctx, tok)
		if !errors.Is(err, ErrNoKeys) {
			t.Fatalf("Verify = %v, want ErrNoKeys", err)
		}
		if code, _ := Challenge(err); code != CodeInvalidToken {
			t.Fatalf("challenge code %q", code)
		}
	}
	wantHits(t, d, 1) // failures are rate-limited too
	clk.Advance(11 * time.Second)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrNoKeys) {
		t.Fatal(err)
	}
	wantHits(t, d, 2)
	d.set(func(d *idp) { d.status = 0 })
	clk.Advance(11 * time.Second)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	wantHits(t, d, 3)

	// Nothing listening at all.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	v2 := newVerifier(t, Provider{JWKSURL: gone.URL, Now: clk.Now})
	if _, err := v2.Verify(ctx, tok); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("closed endpoint: %v", err)
	}
}

func TestJWKSFiltersKeys(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	enc := jwkOf("enc", &k.rsa.PublicKey)
	enc["use"] = "enc"
	rs384 := jwkOf("rs384", &k.rsa.PublicKey)
	rs384["alg"] = "RS384"
	mismatch := jwkOf("mismatch", &k.rsa.PublicKey)
	mismatch["alg"] = "ES256"
	noKid := jwkOf("", &k.rsa2.PublicKey)
	delete(noKid, "kid")
	delete(noKid, "use")
	badEC := jwkOf("badec", &k.p256.PublicKey)
	badEC["y"] = badEC["x"] // not on the curve
	d := newIDP(t, enc, rs384, mismatch, jwkOf("small", &small.PublicKey), badEC,
		map[string]any{"kty": "oct", "kid": "oct", "k": b64u.EncodeToString(k.secret)},
		map[string]any{"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
		jwkOf("good", &k.rsa.PublicKey), noKid)
	v := newVerifier(t, d.provider(clk, "RS256", "RS384", "ES256"))
	ctx := context.Background()
	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"good", rsToken(t, "good", k.rsa), nil},
		{"no kid: every RSA key is tried", rsToken(t, "", k.rsa2), nil},
		{"no kid, signed by the other key", rsToken(t, "", k.rsa), nil},
		{"use=enc", rsToken(t, "enc", k.rsa), ErrUnknownKey},
		{"key pinned to RS384", rsToken(t, "rs384", k.rsa), ErrUnknownKey},
		{"key pinned to RS384, RS384 token", jws(t, hdr("RS384", "kid", "rs384"), claimsAt(nil), rsSigner(crypto.SHA384, k.rsa)), nil},
		{"alg that does not fit the key", rsToken(t, "mismatch", k.rsa), ErrUnknownKey},
		{"1024-bit RSA", rsToken(t, "small", small), ErrUnknownKey},
		{"point not on the curve", jws(t, hdr("ES256", "kid", "badec"), claimsAt(nil), esSigner(crypto.SHA256, k.p256)), ErrUnknownKey},
		{"oct key never used", jws(t, hdr("HS256", "kid", "oct"), claimsAt(nil), hsSigner(sha256New, k.secret)), ErrAlgorithm},
		{"broken entry", rsToken(t, "broken", k.rsa), ErrUnknownKey},
		{"kid not a string", jws(t, map[string]any{"alg": "RS256", "kid": 7}, claimsAt(nil), rsSigner(crypto.SHA256, k.rsa)), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(ctx, tc.token)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// A client that gives up must neither fail the shared fetch nor wait for it.
func TestJWKSFetchContexts(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey))
	gate := make(chan struct{})
	d.set(func(d *idp) { d.gate = gate })
	v := newVerifier(t, d.provider(clk))
	tok := rsToken(t, "k1", k.rsa)

	ctxA, cancelA := context.WithCancel(context.Background())
	resA := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctxA, tok)
		resA <- err
	}()
	waitFor(t, func() bool { return d.hits.Load() == 1 }) // A's fetch is in flight
	// B cannot get the fetch slot; its context ends; it gets ErrNoKeys at once.
	ctxB, cancelB := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelB()
	if _, err := v.Verify(ctxB, tok); !errors.Is(err, ErrNoKeys) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting request: %v", err)
	}
	cancelA() // A's client goes away; the fetch continues
	close(gate)
	if err := <-resA; err != nil {
		t.Fatalf("request whose fetch outlived its context: %v", err)
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	wantHits(t, d, 1)
}

func TestJWKSStartStop(t *testing.T) {
	k := sharedKeys()
	tok := rsToken(t, "k1", k.rsa)
	ctx := context.Background()

	t.Run("refreshes in the background", func(t *testing.T) {
		clk := newClock()
		d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey))
		p := d.provider(clk)
		p.RefreshInterval = 10 * time.Millisecond
		v := newVerifier(t, p)
		v.Start(ctx)
		v.Start(ctx) // second Start: no second goroutine
		waitFor(t, func() bool { return d.hits.Load() >= 3 })
		v.Stop()
		v.Stop()
		if v.jwks.background.Load() {
			t.Error("background flag still set after Stop")
		}
		after := d.hits.Load()
		if _, err := v.Verify(ctx, tok); err != nil { // fresh enough: no fetch
			t.Fatal(err)
		}
		wantHits(t, d, after)
	})

	t.Run("requests leave periodic refresh to it", func(t *testing.T) {
		clk := newClock()
		d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey))
		v := newVerifier(t, d.provider(clk)) // RefreshInterval 5m of real time: one fetch only
		v.Start(ctx)
		defer v.Stop()
		waitFor(t, func() bool { return d.hits.Load() == 1 }) // nothing cached: fetched at once
		waitFor(t, func() bool { return v.jwks.set.Load() != nil })
		clk.Advance(10 * time.Minute) // stale by the clock, but the goroutine owns refresh
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		wantHits(t, d, 1)
		v.Stop() // lazy refresh resumes
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		wantHits(t, d, 2)
	})

	t.Run("retries failures with backoff", func(t *testing.T) {
		clk := newClock()
		d := newIDP(t)
		d.set(func(d *idp) { d.status = http.StatusBadGateway })
		p := d.provider(clk)
		p.RefreshInterval = time.Hour
		p.MinRefetchInterval = 5 * time.Millisecond
		v := newVerifier(t, p)
		v.Start(ctx)
		defer v.Stop()
		waitFor(t, func() bool { return d.hits.Load() >= 3 })
		d.set(func(d *idp) { d.status, d.keys = 0, []map[string]any{jwkOf("k1", &k.rsa.PublicKey)} })
		waitFor(t, func() bool { return v.jwks.set.Load() != nil })
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("stops with its context", func(t *testing.T) {
		d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey))
		v := newVerifier(t, d.provider(newClock()))
		cctx, cancel := context.WithCancel(ctx)
		v.Start(cctx)
		cancel()
		waitFor(t, func() bool { return !v.jwks.background.Load() })
		v.Stop()
	})

	t.Run("no-op without JWKS", func(t *testing.T) {
		v := newVerifier(t, Provider{Secret: k.secret})
		v.Start(ctx)
		v.Stop()
		if err := v.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// Rotation under concurrent load, for the race detector.
func TestJWKSConcurrentRotation(t *testing.T) {
	k := sharedKeys()
	clk := newClock()
	d := newIDP(t, jwkOf("k1", &k.rsa.PublicKey), jwkOf("k2", &k.rsa2.PublicKey))
	p := d.provider(clk)
	p.MinRefetchInterval = time.Nanosecond
	p.RefreshInterval = time.Millisecond
	v := newVerifier(t, p)
	toks := []string{rsToken(t, "k1", k.rsa), rsToken(t, "k2", k.rsa2)}
	var wg sync.WaitGroup
	var failures atomic.Int32
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				clk.Advance(time.Millisecond)
				if _, err := v.Verify(context.Background(), toks[(g+i)%2]); err != nil {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d verifications failed while both keys were published", n)
	}
	if d.hits.Load() < 2 {
		t.Fatalf("only %d fetches: the set never refreshed", d.hits.Load())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
