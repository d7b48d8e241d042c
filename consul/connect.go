package consul

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// ConnectAPI is the part of the agent API that Connect certificates come from.
// *api.Agent (client.Agent()) implements it; unit tests use a fake.
type ConnectAPI interface {
	ConnectCARoots(q *api.QueryOptions) (*api.CARootList, *api.QueryMeta, error)
	ConnectCALeaf(serviceID string, q *api.QueryOptions) (*api.LeafCert, *api.QueryMeta, error)
}

// IntentionAPI is the call that follows the intentions naming an identity as their
// source. *api.Connect (client.Connect()) implements it.
type IntentionAPI interface {
	IntentionMatch(args *api.IntentionMatch, q *api.QueryOptions) (map[string][]*api.Intention, *api.QueryMeta, error)
}

// Leaf is one leaf certificate of a Connect service identity, as the agent issued it.
// A *Leaf handed out by Certs is never modified.
type Leaf struct {
	// Cert is the certificate, its intermediates and its private key, ready for a
	// tls.Config; Cert.Leaf is parsed.
	Cert tls.Certificate
	// Serial is the serial number as Consul prints it (hex bytes joined by ':').
	Serial string
	// URI is the certificate's SPIFFE ID: spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<name>.
	URI *url.URL
	// Datacenter is the dc segment of URI.
	Datacenter string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
}

// Roots is the set of CA roots Consul lists at one moment. Every listed root is
// trusted: during a CA rotation Consul lists the old and the new one, and leaves
// signed by either are valid. A *Roots handed out by Certs is never modified.
type Roots struct {
	// TrustDomain is the cluster's SPIFFE trust domain (<uuid>.consul).
	TrustDomain string
	// ActiveID is the ID of the root that signs new certificates.
	ActiveID string
	// IDs are the IDs of every listed root, sorted.
	IDs []string
	// Pool holds every listed root certificate.
	Pool *x509.CertPool
}

// ConnectObserver is told what a Certs does, for metrics. Its methods are called
// from the Certs' goroutines and must be quick; they must not call Stop.
type ConnectObserver interface {
	// LeafUpdated is called with each new leaf; rotated is false for the first.
	LeafUpdated(leaf *Leaf, rotated bool)
	// RootsUpdated is called with each changed root set; rotated is false for the first.
	RootsUpdated(roots *Roots, rotated bool)
	// ConnectFailed follows each failed query ("leaf", "roots" or "intentions")
	// with the wait before the next try.
	ConnectFailed(kind string, err error, retryIn time.Duration)
	// IntentionsChanged is called when an intention whose source is this identity
	// was created, changed or deleted (with ConnectOptions.Intentions).
	// Destinations check intentions only when a connection opens, so a client
	// that wants a change to apply at once opens fresh connections.
	IntentionsChanged()
}

// NopConnectObserver does nothing; embed it to implement only some methods.
type NopConnectObserver struct{}

// LeafUpdated does nothing.
func (NopConnectObserver) LeafUpdated(*Leaf, bool) {}

// RootsUpdated does nothing.
func (NopConnectObserver) RootsUpdated(*Roots, bool) {}

// ConnectFailed does nothing.
func (NopConnectObserver) ConnectFailed(string, error, time.Duration) {}

// IntentionsChanged does nothing.
func (NopConnectObserver) IntentionsChanged() {}

// ConnectOptions configure a Certs. Zero values mean the documented defaults.
type ConnectOptions struct {
	// Service is the mesh identity: the service name the leaf certificate is
	// issued for. Required. With ACLs the token needs service:write on it.
	Service string
	// WaitTime, MinGap, MinBackoff and MaxBackoff mean what they mean in
	// WatchOptions, with the same defaults.
	WaitTime   time.Duration
	MinGap     time.Duration
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Observer is told about new leaves and roots and failed queries. nil: none.
	Observer ConnectObserver
	// Intentions, when set (client.Connect()), also follows the intentions whose
	// source is Service (/v1/connect/intentions/match?by=source) and calls
	// Observer.IntentionsChanged when they change. Reading them needs intentions
	// read permission; if the token lacks it, this one query stops (logged once)
	// and the rest works on. nil: intentions are not followed.
	Intentions IntentionAPI
	// Logger receives rotations (info) and failures (warn). nil: no logging.
	Logger hclog.Logger
	// Now and After are the loops' clock, as in WatchOptions. nil: time.Now and
	// time.After.
	Now   func() time.Time
	After func(d time.Duration) <-chan time.Time
}

// Certs holds the leaf certificate of one Connect identity and the CA roots, both
// followed with blocking queries on the local agent and swapped atomically, so TLS
// configs built from it (ClientTLS, ServerTLS) always read the current ones and a
// rotation restarts nothing. While the agent is unreachable the last leaf and roots
// stay in use. Build with NewCerts, run with Run, end with Stop or Run's context.
type Certs struct {
	agent ConnectAPI
	opts  ConnectOptions
	log   hclog.Logger
	obs   ConnectObserver

	leaf  atomic.Pointer[Leaf]
	roots atomic.Pointer[Roots]

	ready     chan struct{} // closed once both a leaf and roots arrived
	readyOnce sync.Once
	life      runOnce

	intentions string // fingerprint of the last intentions answer; owned by its loop
	intSeen    bool

	mu       sync.Mutex
	leafErr  error
	rootsErr error
}

// NewCerts returns a Certs for opts.Service that queries agent (client.Agent()). It
// does nothing until Run.
func NewCerts(agent ConnectAPI, opts ConnectOptions) (*Certs, error) {
	if agent == nil {
		return nil, fmt.Errorf("%w: connect: nil ConnectAPI", ErrInvalidOptions)
	}
	if opts.Service == "" {
		return nil, fmt.Errorf("%w: connect: service name is empty", ErrInvalidOptions)
	}
	w := WatchOptions{Service: opts.Service, WaitTime: opts.WaitTime, MinGap: opts.MinGap,
		MinBackoff: opts.MinBackoff, MaxBackoff: opts.MaxBackoff, Logger: opts.Logger, Now: opts.Now, After: opts.After}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	w = w.withDefaults()
	opts.WaitTime, opts.MinGap, opts.MinBackoff, opts.MaxBackoff = w.WaitTime, w.MinGap, w.MinBackoff, w.MaxBackoff
	opts.Logger, opts.Now, opts.After = w.Logger, w.Now, w.After
	obs := opts.Observer
	if obs == nil {
		obs = NopConnectObserver{}
	}
	return &Certs{
		agent: agent,
		opts:  opts,
		log:   opts.Logger.Named("connect").With("identity", opts.Service),
		obs:   obs,
		ready: make(chan struct{}),
		life:  newRunOnce(),
	}, nil
}

// Service returns the identity the leaf is issued for.
func (c *Certs) Service() string { return c.opts.Service }

// Ready is closed once the first leaf and the first roots have arrived.
func (c *Certs) Ready() <-chan struct{} { return c.ready }

// Leaf returns the current leaf, nil before the first.
func (c *Certs) Leaf() *Leaf { return c.leaf.Load() }

// Roots returns the current roots, nil before the first.
func (c *Certs) Roots() *Roots { return c.roots.Load() }

// Err returns the error of the last leaf or roots query if it failed, else nil.
func (c *Certs) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Join(c.leafErr, c.rootsErr)
}

// Run follows the leaf and the roots until ctx is done or Stop is called, then
// returns nil. It may be called once; a second call returns ErrAlreadyRunning.
func (c *Certs) Run(ctx context.Context) error {
	return c.life.run(ctx, func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); c.loop(ctx, "roots", c.queryRoots) }()
		go func() { defer wg.Done(); c.loop(ctx, "leaf", c.queryLeaf) }()
		if c.opts.Intentions != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.loop(ctx, "intentions", c.queryIntentions) }()
		}
		wg.Wait()
	})
}

// Stop ends Run, aborting the queries in flight, and waits until Run has returned.
// It is idempotent and may be called before Run or without Run.
func (c *Certs) Stop() { c.life.stop() }

// queryRoots makes one roots query and stores a changed answer.
func (c *Certs) queryRoots(q *api.QueryOptions) (uint64, error) {
	list, meta, err := c.agent.ConnectCARoots(q)
	if err != nil {
		return 0, classify("connect CA roots", err)
	}
	if meta == nil {
		return 0, errors.New("consul: connect CA roots: answer without query metadata")
	}
	roots, err := parseRoots(list)
	if err != nil {
		return 0, err
	}
	prev := c.roots.Load()
	if prev == nil || !slices.Equal(prev.IDs, roots.IDs) || prev.ActiveID != roots.ActiveID || prev.TrustDomain != roots.TrustDomain {
		c.roots.Store(roots)
		if prev != nil {
			c.log.Info("connect CA roots rotated", "active", roots.ActiveID, "roots", len(roots.IDs), "previous_active", prev.ActiveID)
		} else {
			c.log.Info("connect CA roots received", "active", roots.ActiveID, "roots", len(roots.IDs), "trust_domain", roots.TrustDomain)
		}
		c.notify(func() { c.obs.RootsUpdated(roots, prev != nil) })
		c.checkReady()
	}
	return meta.LastIndex, nil
}

// queryLeaf makes one leaf query and stores a changed answer.
func (c *Certs) queryLeaf(q *api.QueryOptions) (uint64, error) {
	lc, meta, err := c.agent.ConnectCALeaf(c.opts.Service, q)
	if err != nil {
		return 0, classify(fmt.Sprintf("connect leaf certificate for %q", c.opts.Service), err)
	}
	if meta == nil {
		return 0, errors.New("consul: connect leaf: answer without query metadata")
	}
	prev := c.leaf.Load()
	if prev != nil && prev.Serial == lc.SerialNumber {
		return meta.LastIndex, nil
	}
	leaf, err := parseLeaf(lc)
	if err != nil {
		return 0, err
	}
	c.leaf.Store(leaf)
	if prev != nil {
		c.log.Info("connect leaf certificate rotated", "serial", leaf.Serial, "previous", prev.Serial, "not_after", leaf.NotAfter)
	} else {
		c.log.Info("connect leaf certificate received", "serial", leaf.Serial, "uri", leaf.URI.String(), "not_after", leaf.NotAfter)
	}
	c.notify(func() { c.obs.LeafUpdated(leaf, prev != nil) })
	c.checkReady()
	return meta.LastIndex, nil
}

// queryIntentions makes one query of the intentions whose source is this identity
// and tells the observer when they changed.
func (c *Certs) queryIntentions(q *api.QueryOptions) (uint64, error) {
	m, meta, err := c.opts.Intentions.IntentionMatch(&api.IntentionMatch{By: api.IntentionMatchSource, Names: []string{c.opts.Service}}, q)
	if err != nil {
		return 0, classify(fmt.Sprintf("intentions with source %q", c.opts.Service), err)
	}
	if meta == nil {
		return 0, errors.New("consul: intentions: answer without query metadata")
	}
	var keys []string
	for _, ixns := range m {
		for _, ixn := range ixns {
			if ixn != nil {
				keys = append(keys, fmt.Sprintf("%s/%s/%s/%d", ixn.ID, ixn.DestinationName, ixn.Action, ixn.ModifyIndex))
			}
		}
	}
	slices.Sort(keys)
	fp := strings.Join(keys, ",")
	if c.intSeen && fp != c.intentions {
		c.log.Info("intentions naming this identity changed", "intentions", len(keys))
		c.notify(c.obs.IntentionsChanged)
	}
	c.intentions, c.intSeen = fp, true
	return meta.LastIndex, nil
}

func (c *Certs) checkReady() {
	if c.leaf.Load() != nil && c.roots.Load() != nil {
		c.readyOnce.Do(func() { close(c.ready) })
	}
}

// loop runs one blocking query after another, after Consul's documented rules and
// the Watcher's: index reset when it goes backwards, capped exponential backoff with
// jitter after a failure (and a non-blocking query next), a minimum gap with jitter
// between good answers, and a deadline per query so a dead connection cannot hang.
func (c *Certs) loop(ctx context.Context, kind string, query func(*api.QueryOptions) (uint64, error)) {
	var (
		index    uint64
		failures int
		log      = c.log.With("query", kind)
		timeout  = c.opts.WaitTime + c.opts.WaitTime/16 + querySlack
	)
	for {
		start := c.opts.Now()
		qctx, cancel := context.WithTimeout(ctx, timeout)
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: c.opts.WaitTime}).WithContext(qctx)
		got, err := query(q)
		cancel()
		if ctx.Err() != nil {
			return
		}
		c.setErr(kind, err)
		if err != nil && kind == "intentions" && errors.Is(err, ErrACL) {
			log.Warn("cannot read the intentions naming this identity; an intention change applies when a connection opens", "error", err)
			return
		}
		if err != nil {
			failures++
			wait := backoffFor(failures, c.opts.MinBackoff, c.opts.MaxBackoff, rand.Float64())
			args := []any{"error", err, "retry_in", wait, "failed_queries", failures}
			if errors.Is(err, ErrACL) {
				log.Error("consul refused the ACL token; keeping the current certificates", args...)
			} else {
				log.Warn("connect query failed; keeping the current certificates", args...)
			}
			c.notify(func() { c.obs.ConnectFailed(kind, err, wait) })
			index = 0
			if !sleepClock(ctx, c.opts.After, wait) {
				return
			}
			continue
		}
		if failures > 0 {
			log.Info("consul answers again", "failed_queries", failures)
			failures = 0
		}
		index = nextIndex(index, got, log)
		if elapsed := c.opts.Now().Sub(start); elapsed < c.opts.MinGap {
			gap := c.opts.MinGap - elapsed + time.Duration(rand.Float64()*float64(c.opts.MinGap/5))
			if !sleepClock(ctx, c.opts.After, gap) {
				return
			}
		}
	}
}

func (c *Certs) setErr(kind string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch kind {
	case "leaf":
		c.leafErr = err
	case "roots":
		c.rootsErr = err
	}
}

// notify calls an observer; a panic in it is logged, not fatal to the loop.
func (c *Certs) notify(f func()) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in connect observer", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// backoffFor returns the wait after the n-th consecutive failure: lo·2^(n-1)
// capped at hi, of which a random half to all (jitter in [0, 1)).
func backoffFor(n int, lo, hi time.Duration, jitter float64) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + time.Duration(jitter*float64(d-d/2))
}

// sleepClock waits d on after, or less if ctx ends first (then it returns false).
func sleepClock(ctx context.Context, after func(time.Duration) <-chan time.Time, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-after(d):
		return true
	}
}

// parseRoots turns the agent's root list into a Roots. An answer with no usable
// root is an error: trusting nothing would refuse every upstream.
func parseRoots(list *api.CARootList) (*Roots, error) {
	if list == nil || len(list.Roots) == 0 {
		return nil, errors.New("consul: connect CA roots: the agent lists no root (is Connect enabled?)")
	}
	r := &Roots{TrustDomain: strings.ToLower(list.TrustDomain), ActiveID: list.ActiveRootID, Pool: x509.NewCertPool()}
	for _, root := range list.Roots {
		if root == nil {
			continue
		}
		if !r.Pool.AppendCertsFromPEM([]byte(root.RootCertPEM)) {
			return nil, fmt.Errorf("consul: connect CA root %s: no certificate in its PEM", root.ID)
		}
		r.IDs = append(r.IDs, root.ID)
	}
	if r.TrustDomain == "" {
		return nil, errors.New("consul: connect CA roots: no trust domain")
	}
	slices.Sort(r.IDs)
	return r, nil
}

// parseLeaf turns the agent's leaf into a Leaf.
func parseLeaf(lc *api.LeafCert) (*Leaf, error) {
	if lc == nil {
		return nil, errors.New("consul: connect leaf: empty answer")
	}
	cert, err := tls.X509KeyPair([]byte(lc.CertPEM), []byte(lc.PrivateKeyPEM))
	if err != nil {
		return nil, fmt.Errorf("consul: connect leaf %s: %w", lc.SerialNumber, err)
	}
	x, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("consul: connect leaf %s: %w", lc.SerialNumber, err)
	}
	cert.Leaf = x
	id, err := parseSPIFFE(x)
	if err != nil {
		return nil, fmt.Errorf("consul: connect leaf %s: %w", lc.SerialNumber, err)
	}
	serial := lc.SerialNumber
	if serial == "" {
		serial = formatSerial(x)
	}
	return &Leaf{Cert: cert, Serial: serial, URI: id.uri, Datacenter: id.dc, NotAfter: x.NotAfter}, nil
}

// formatSerial prints a certificate's serial number as Consul does: hex bytes joined by ':'.
func formatSerial(x *x509.Certificate) string {
	b := x.SerialNumber.Bytes()
	parts := make([]string, len(b))
	for i, v := range b {
		parts[i] = fmt.Sprintf("%02x", v)
	}
	return strings.Join(parts, ":")
}
