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

	"github.com/hashicorp/go-hclog"
)

// errThrottled: a fetch was wanted but the last one started less than MinRefetchInterval ago.
var errThrottled = errors.New("JWKS fetch rate-limited")

// keySet is an immutable snapshot of a fetched JWKS.
type keySet struct {
	keys    []publicKey
	fetched time.Time
}

// jwks caches one JWKS endpoint. The current set is read without locks; fetches are
// serialised by sem (single flight), and lastAttempt, written only with sem held, spaces
// token-triggered fetches at least minGap apart.
type jwks struct {
	url     string
	client  *http.Client
	now     func() time.Time
	refresh time.Duration
	minGap  time.Duration
	timeout time.Duration
	log     hclog.Logger

	set         atomic.Pointer[keySet] // last good set; nil until the first success
	sem         chan struct{}          // capacity 1: held while fetching
	lastAttempt atomic.Int64           // UnixNano of the last fetch start; 0 = never
	background  atomic.Bool            // a Start goroutine owns periodic refresh

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
		sem:     make(chan struct{}, 1),
	}
}

// key returns the verification key(s) for a token with kid (may be "") and alg.
func (j *jwks) key(ctx context.Context, kid, alg string) (any, error) {
	set := j.set.Load()
	switch {
	case set == nil:
		var err error
		if set, err = j.fetchIfUnchanged(ctx, nil); set == nil {
			return nil, fmt.Errorf("%w: %w", ErrNoKeys, err)
		}
	case !j.background.Load() && j.now().Sub(set.fetched) >= j.refresh:
		j.refreshStale()
		set = j.set.Load()
	}
	if k := keysFor(set.keys, kid, alg); k != nil {
		return k, nil
	}
	// Unknown kid, or no key for this alg: perhaps the keys rotated. Refetch, rate-limited,
	// so random kids cannot make us hammer the endpoint.
	if fresh, _ := j.fetchIfUnchanged(ctx, set); fresh != set {
		if k := keysFor(fresh.keys, kid, alg); k != nil {
			return k, nil
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

// fetchIfUnchanged fetches unless the set changed from seen while we waited for the
// fetch slot (someone else fetched) or the last fetch began less than minGap ago. It
// returns the current set (nil if none) and why no new set was fetched, if none was.
func (j *jwks) fetchIfUnchanged(ctx context.Context, seen *keySet) (*keySet, error) {
	select {
	case j.sem <- struct{}{}:
	case <-ctx.Done():
		return j.set.Load(), ctx.Err()
	}
	defer func() { <-j.sem }()
	if cur := j.set.Load(); cur != seen {
		return cur, nil
	}
	if last := j.lastAttempt.Load(); last != 0 && j.now().Sub(time.Unix(0, last)) < j.minGap {
		return seen, errThrottled
	}
	// Detached from the request: a client that goes away must not fail the fetch that
	// other requests are waiting for. FetchTimeout still bounds it.
	return j.fetchLocked(context.WithoutCancel(ctx))
}

// refreshStale refreshes a stale set if no fetch is running and the last attempt is at
// least minGap old; it never waits.
func (j *jwks) refreshStale() {
	select {
	case j.sem <- struct{}{}:
	default:
		return // a fetch is running; keep using the cached set
	}
	defer func() { <-j.sem }()
	now := j.now()
	if set := j.set.Load(); set != nil && now.Sub(set.fetched) < j.refresh {
		return
	}
	if last := j.lastAttempt.Load(); last != 0 && now.Sub(time.Unix(0, last)) < j.minGap {
		return
	}
	j.fetchLocked(context.Background())
}

// refreshNow fetches regardless of the rate limit (Refresh, and the Start goroutine).
func (j *jwks) refreshNow(ctx context.Context) error {
	select {
	case j.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-j.sem }()
	_, err := j.fetchLocked(ctx)
	return err
}

// fetchLocked fetches and, on success, publishes a new set. sem must be held. On failure
// the previous set stays and is returned with the error.
func (j *jwks) fetchLocked(ctx context.Context) (*keySet, error) {
	start := j.now()
	j.lastAttempt.Store(start.UnixNano())
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
