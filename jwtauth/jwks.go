package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/go-hclog"
)

// errThrottled: a fetch was wanted but the last one ended less than MinRefetchInterval ago.
var errThrottled = errors.New("JWKS fetch rate-limited")

// maxKidlessKeys is how many keys a token without "kid" may be tried against. A JWKS
// that holds more keys for the token's algorithm refuses such tokens, so a token that
// names no key cannot make the gateway run one signature check per published key.
const maxKidlessKeys = 2

// keySet is an immutable snapshot of a fetched JWKS.
type keySet struct {
	keys    []publicKey
	fetched time.Time
}

// fetchCall is one JWKS fetch and everyone waiting for it. The leader (the request, the
// Refresh or the refresher that started it) runs it; every other caller waits on done
// and then reads set and err, so one fetch serves every waiter with its result or its
// error. set and err are written before done is closed and never after.
type fetchCall struct {
	done chan struct{}
	set  *keySet // the current set after the fetch: the new one, or the old one on failure
	err  error
}

// jwks caches one JWKS endpoint. The current set is read without locks. At most one
// fetch runs at a time (inflight); callers that need keys meanwhile wait for it instead
// of queueing for a fetch of their own, and token-triggered fetches are spaced at least
// minGap apart, measured from the end of the previous one.
type jwks struct {
	url     string
	client  *http.Client
	now     func() time.Time
	refresh time.Duration
	minGap  time.Duration
	timeout time.Duration
	log     hclog.Logger

	set        atomic.Pointer[keySet] // last good set; nil until the first success
	background atomic.Bool            // a Start goroutine owns periodic refresh

	fmu      sync.Mutex // guards inflight, lastErr, lastEnd
	inflight *fetchCall // nil when no fetch runs
	lastErr  error      // the last finished fetch's error; nil after a success
	lastEnd  time.Time  // when the last fetch finished; zero before the first

	mu     sync.Mutex // guards cancel and done
	cancel context.CancelFunc
	done   chan struct{}
}

func newJWKS(p *Provider) *jwks {
	return &jwks{
		url:     p.JWKSURL,
		client:  p.HTTPClient,
		now:     p.Now,
		refresh: p.RefreshInterval,
		minGap:  p.MinRefetchInterval,
		timeout: p.FetchTimeout,
		log:     p.Logger.Named("jwks").With("provider", p.Name, "url", p.JWKSURL),
	}
}

// key returns the verification key(s) for a token with kid (may be "") and alg.
func (j *jwks) key(ctx context.Context, kid, alg string) (any, error) {
	set := j.set.Load()
	switch {
	case set == nil:
		var err error
		if set, err = j.fetchShared(ctx, nil); set == nil {
			return nil, fmt.Errorf("%w: %w", ErrNoKeys, err)
		}
	case !j.background.Load() && j.now().Sub(set.fetched) >= j.refresh:
		j.refreshStale()
		set = j.set.Load()
	}
	if k, err := keyIn(set, kid, alg); k != nil || err != nil {
		return k, err
	}
	// Unknown kid, or no key for this alg: perhaps the keys rotated. Refetch, rate-limited,
	// so random kids cannot make us hammer the endpoint.
	if fresh, _ := j.fetchShared(ctx, set); fresh != nil && fresh != set {
		if k, err := keyIn(fresh, kid, alg); k != nil || err != nil {
			return k, err
		}
	}
	if kid != "" {
		if len(kid) > 64 { // the kid is the client's; keep log lines short
			kid = kid[:64] + "…"
		}
		return nil, fmt.Errorf("%w: kid %q for %s", ErrUnknownKey, kid, alg)
	}
	return nil, fmt.Errorf("%w: no key for %s", ErrUnknownKey, alg)
}

// keyIn is keysFor over a fetched set, refusing a token without kid when the set holds
// more than maxKidlessKeys keys for alg. Both results nil: no key fits.
func keyIn(set *keySet, kid, alg string) (any, error) {
	k := keysFor(set.keys, kid, alg)
	if ks, ok := k.(jwt.VerificationKeySet); ok && kid == "" && len(ks.Keys) > maxKidlessKeys {
		return nil, fmt.Errorf("%w: the token names no key (\"kid\") and the JWKS holds %d keys for %s",
			ErrUnknownKey, len(ks.Keys), alg)
	}
	return k, nil
}

// join decides what a caller that wants a fresh set does. With a fetch in flight it
// gets that fetch to wait for, unless the last fetch failed (the endpoint is known to be
// down: answer at once instead of queueing behind a likely timeout) and wait is not
// forced. Without one, it becomes the leader of a new fetch, unless the set changed
// since the caller saw it (someone else fetched: use that) or, unless forced, the last
// fetch ended less than minGap ago (then err says why). c == nil with err == nil means:
// read the current set.
func (j *jwks) join(seen *keySet, force bool) (c *fetchCall, leader bool, err error) {
	j.fmu.Lock()
	defer j.fmu.Unlock()
	if !force && j.set.Load() != seen {
		return nil, false, nil
	}
	if c := j.inflight; c != nil {
		if j.lastErr != nil && !force {
			return nil, false, fmt.Errorf("%w (a retry is in flight): %w", errThrottled, j.lastErr)
		}
		return c, false, nil
	}
	if !force && !j.lastEnd.IsZero() && j.now().Sub(j.lastEnd) < j.minGap {
		if j.lastErr != nil {
			return nil, false, fmt.Errorf("%w: %w", errThrottled, j.lastErr)
		}
		return nil, false, errThrottled
	}
	c = &fetchCall{done: make(chan struct{})}
	j.inflight = c
	return c, true, nil
}

// run fetches as c's leader, publishes the outcome to c's waiters, and ends c.
func (j *jwks) run(ctx context.Context, c *fetchCall) {
	defer func() {
		if r := recover(); r != nil { // never leave waiters hanging
			c.set, c.err = j.set.Load(), fmt.Errorf("panic in JWKS fetch: %v", r)
			j.log.Error("JWKS fetch panicked", "panic", r)
		}
		j.fmu.Lock()
		j.inflight, j.lastErr, j.lastEnd = nil, c.err, j.now()
		j.fmu.Unlock()
		close(c.done)
	}()
	c.set, c.err = j.fetchAndStore(ctx)
}

// wait waits for c, or for ctx. The wait is bounded even when ctx has no deadline: the
// fetch itself ends within FetchTimeout.
func wait(ctx context.Context, c *fetchCall) (*keySet, error) {
	select {
	case <-c.done:
		return c.set, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetchShared returns a set fresher than seen: from a fetch this call leads, from the
// fetch in flight, or the current set when another caller replaced seen meanwhile. When
// no fetch is allowed or it fails, it returns the current set (nil if none) and why.
func (j *jwks) fetchShared(ctx context.Context, seen *keySet) (*keySet, error) {
	c, leader, err := j.join(seen, false)
	switch {
	case c == nil:
		return j.set.Load(), err
	case leader:
		// Detached from the request: a client that goes away must not fail the fetch that
		// other requests are waiting for. FetchTimeout still bounds it.
		j.run(context.WithoutCancel(ctx), c)
		return c.set, c.err
	}
	set, err := wait(ctx, c)
	if set == nil {
		set = j.set.Load()
	}
	return set, err
}

// refreshStale refreshes a stale set if no fetch is running and the last one ended at
// least minGap ago; it never waits for another caller's fetch.
func (j *jwks) refreshStale() {
	j.fmu.Lock()
	idle := j.inflight == nil
	j.fmu.Unlock()
	if !idle {
		return // a fetch is running; keep using the cached set
	}
	set := j.set.Load()
	if set != nil && j.now().Sub(set.fetched) < j.refresh {
		return
	}
	if c, leader, _ := j.join(set, false); leader {
		j.run(context.Background(), c)
	}
}

// refreshNow fetches regardless of the rate limit (Refresh, and the Start goroutine), or
// waits for the fetch in flight and returns its outcome.
func (j *jwks) refreshNow(ctx context.Context) error {
	c, leader, _ := j.join(nil, true)
	if leader {
		j.run(ctx, c)
		return c.err
	}
	_, err := wait(ctx, c)
	return err
}

// fetchAndStore fetches and, on success, publishes a new set. On failure the previous
// set stays and is returned with the error.
func (j *jwks) fetchAndStore(ctx context.Context) (*keySet, error) {
	start := j.now()
	keys, err := j.fetch(ctx)
	if err != nil {
		old := j.set.Load()
		if old != nil {
			j.log.Warn("JWKS fetch failed; keeping the cached keys", "error", err,
				"keys", len(old.keys), "age", start.Sub(old.fetched).String())
		} else {
			j.log.Error("JWKS fetch failed; no keys cached, tokens are refused", "error", err)
		}
		return old, err
	}
	set := &keySet{keys: keys, fetched: start}
	j.set.Store(set)
	if j.log.IsDebug() {
		j.log.Debug("JWKS fetched", "keys", len(keys))
	}
	return set, nil
}

// fetch GETs and parses the JWKS. A document without one usable key is an error, so a
// broken endpoint cannot wipe the cached keys.
func (j *jwks) fetch(ctx context.Context) ([]publicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("JWKS endpoint answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSBytes)
	}
	return parseJWKS(body, j.log)
}

// jwk is the subset of RFC 7517/7518 fields we read.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS returns the usable signature keys of a JWK Set. Keys for encryption, of
// unsupported types ("oct" included: a JWKS never supplies HMAC secrets) or with an
// algorithm that does not fit their type are skipped.
func parseJWKS(body []byte, log hclog.Logger) ([]publicKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("JWKS is not valid JSON: %w", err)
	}
	var keys []publicKey
	for i, raw := range doc.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			log.Warn("skipping JWKS entry", "index", i, "error", err)
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pk, err := k.publicKey()
		if err != nil {
			log.Warn("skipping JWKS key", "index", i, "kid", k.Kid, "error", err)
			continue
		}
		keys = append(keys, pk)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS holds no usable signature key (%d entries)", len(doc.Keys))
	}
	return keys, nil
}

func (k *jwk) publicKey() (publicKey, error) {
	var key any
	switch k.Kty {
	case "RSA":
		n, err := b64Int(k.N)
		if err != nil {
			return publicKey{}, fmt.Errorf("n: %w", err)
		}
		e, err := b64Int(k.E)
		if err != nil {
			return publicKey{}, fmt.Errorf("e: %w", err)
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return publicKey{}, errors.New("bad RSA exponent")
		}
		key = &rsa.PublicKey{N: n, E: int(e.Int64())}
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return publicKey{}, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err1 := b64Fixed(k.X, size)
		y, err2 := b64Fixed(k.Y, size)
		if err := errors.Join(err1, err2); err != nil {
			return publicKey{}, err
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return publicKey{}, err
		}
		key = pub
	case "OKP":
		if k.Crv != "Ed25519" {
			return publicKey{}, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err := b64Fixed(k.X, ed25519.PublicKeySize)
		if err != nil {
			return publicKey{}, err
		}
		key = ed25519.PublicKey(x)
	default:
		return publicKey{}, fmt.Errorf("unsupported key type %q", k.Kty)
	}
	fam, err := classifyKey(key)
	if err != nil {
		return publicKey{}, err
	}
	if k.Alg != "" && algFamily(k.Alg) != fam {
		return publicKey{}, fmt.Errorf("algorithm %q does not fit the key", k.Alg)
	}
	return publicKey{kid: k.Kid, alg: k.Alg, fam: fam, key: key}, nil
}

// b64 decodes base64url, with or without padding.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func b64Int(s string) (*big.Int, error) {
	b, err := b64(s)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	return new(big.Int).SetBytes(b), nil
}

// b64Fixed decodes a coordinate of exactly size bytes (shorter ones are left-padded, as
// some issuers strip leading zeros).
func b64Fixed(s string, size int) ([]byte, error) {
	b, err := b64(s)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 || len(b) > size {
		return nil, fmt.Errorf("coordinate of %d bytes, want %d", len(b), size)
	}
	if len(b) < size {
		b = append(make([]byte, size-len(b)), b...)
	}
	return b, nil
}

// start launches the refresher goroutine unless it runs already.
func (j *jwks) start(ctx context.Context) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	j.cancel, j.done = cancel, make(chan struct{})
	j.background.Store(true)
	go j.loop(ctx, j.done)
}

// stop cancels the refresher and waits for it to exit.
func (j *jwks) stop() {
	j.mu.Lock()
	cancel, done := j.cancel, j.done
	j.cancel, j.done = nil, nil
	j.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// loop refreshes every refresh interval; after a failure it retries after minGap, doubling
// up to the refresh interval. It owns no state besides its timer and exits on ctx.
func (j *jwks) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	defer j.background.Store(false)
	delay := time.Duration(0) // fetch at once when nothing is cached or the set is stale
	if set := j.set.Load(); set != nil {
		if age := j.now().Sub(set.fetched); age < j.refresh {
			delay = j.refresh - age
		}
	}
	backoff := j.minGap
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if err := j.safeRefresh(ctx); err != nil && ctx.Err() == nil {
			timer.Reset(backoff)
			backoff = min(2*backoff, j.refresh)
			continue
		}
		backoff = j.minGap
		timer.Reset(j.refresh)
	}
}

// safeRefresh is refreshNow that turns a panic into an error, so the loop survives.
func (j *jwks) safeRefresh(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in JWKS refresh: %v", r)
			j.log.Error("JWKS refresh panicked", "panic", r)
		}
	}()
	return j.refreshNow(ctx)
}
