package consul

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// testCA is a Connect-like CA made in the test: a root, and leaves with a SPIFFE URI.
type testCA struct {
	id     string
	td     string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pem    string
	serial atomic.Int64
}

func newTestCA(t testing.TB, id, trustDomain string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test CA " + id},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{id: id, td: trustDomain, cert: cert, key: key,
		pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
	ca.serial.Store(100)
	return ca
}

// leaf issues a leaf for service in dc1 of the CA's trust domain (or the URI given).
func (ca *testCA) leaf(t testing.TB, service string, uri ...string) *api.LeafCert {
	t.Helper()
	u := ServiceURI(ca.td, "dc1", service)
	if len(uri) > 0 {
		u = uri[0]
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: service},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(72 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{parsed},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	return &api.LeafCert{
		SerialNumber:  formatSerial(x),
		CertPEM:       string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		PrivateKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})),
		Service:       service, ServiceURI: u,
		ValidAfter: x.NotBefore, ValidBefore: x.NotAfter,
	}
}

// fakeConnect serves roots and a leaf; a change wakes the blocking queries.
type fakeConnect struct {
	mu      sync.Mutex
	roots   *api.CARootList
	leaf    *api.LeafCert
	index   uint64
	changed chan struct{}
	fail    error
}

func newFakeConnect(roots *api.CARootList, leaf *api.LeafCert) *fakeConnect {
	return &fakeConnect{roots: roots, leaf: leaf, index: 1, changed: make(chan struct{})}
}

func rootList(cas ...*testCA) *api.CARootList {
	l := &api.CARootList{TrustDomain: cas[0].td, ActiveRootID: cas[len(cas)-1].id}
	for _, ca := range cas {
		l.Roots = append(l.Roots, &api.CARoot{ID: ca.id, RootCertPEM: ca.pem, Active: ca.id == l.ActiveRootID})
	}
	return l
}

func (f *fakeConnect) set(roots *api.CARootList, leaf *api.LeafCert) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if roots != nil {
		f.roots = roots
	}
	if leaf != nil {
		f.leaf = leaf
	}
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
}

// wait blocks like a blocking query until the index passes q.WaitIndex.
func (f *fakeConnect) wait(q *api.QueryOptions) (uint64, error) {
	for {
		f.mu.Lock()
		idx, ch, fail := f.index, f.changed, f.fail
		f.mu.Unlock()
		if fail != nil {
			return 0, fail
		}
		if idx > q.WaitIndex {
			return idx, nil
		}
		select {
		case <-ch:
		case <-q.Context().Done():
			return 0, q.Context().Err()
		}
	}
}

func (f *fakeConnect) ConnectCARoots(q *api.QueryOptions) (*api.CARootList, *api.QueryMeta, error) {
	idx, err := f.wait(q)
	if err != nil {
		return nil, nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.roots, &api.QueryMeta{LastIndex: idx}, nil
}

func (f *fakeConnect) ConnectCALeaf(_ string, q *api.QueryOptions) (*api.LeafCert, *api.QueryMeta, error) {
	idx, err := f.wait(q)
	if err != nil {
		return nil, nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leaf, &api.QueryMeta{LastIndex: idx}, nil
}

// recordingObserver counts rotations.
type recordingObserver struct {
	NopConnectObserver
	leaves, leafRotations, rootRotations atomic.Int64
}

func (o *recordingObserver) LeafUpdated(_ *Leaf, rotated bool) {
	o.leaves.Add(1)
	if rotated {
		o.leafRotations.Add(1)
	}
}

func (o *recordingObserver) RootsUpdated(_ *Roots, rotated bool) {
	if rotated {
		o.rootRotations.Add(1)
	}
}

// startCerts runs a Certs over api until the test ends and waits until it is ready.
func startCerts(t *testing.T, capi ConnectAPI, service string, obs ConnectObserver) *Certs {
	t.Helper()
	c, err := NewCerts(capi, ConnectOptions{Service: service, WaitTime: time.Second, MinGap: time.Millisecond, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Run(context.Background()) }()
	t.Cleanup(c.Stop)
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("certs for %s not ready: %v", service, c.Err())
	}
	return c
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type allowAll struct{ denied atomic.Bool }

func (a *allowAll) ConnectAuthorize(p *api.AgentAuthorizeParams) (*api.AgentAuthorize, error) {
	if a.denied.Load() {
		return &api.AgentAuthorize{Authorized: false, Reason: "denied by test"}, nil
	}
	return &api.AgentAuthorize{Authorized: true, Reason: "allowed by test"}, nil
}

// nativeServer serves HTTP over ServerTLS of certs and answers with the client's SPIFFE ID and serial.
func nativeServer(t *testing.T, certs *Certs, auth AuthorizeAPI) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", certs.ServerTLS(auth))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pc := r.TLS.PeerCertificates[0]
			fmt.Fprintf(w, "%s %s", pc.URIs[0], formatSerial(pc))
		}),
		ErrorLog: log.New(io.Discard, "", 0), // refused handshakes are expected here
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func meshClient(d *Dialer) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
}

func fetch(c *http.Client, addr string) (string, error) {
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestParseSPIFFE(t *testing.T) {
	for _, tc := range []struct {
		uri             string
		ok              bool
		svc, dc, ns, ap string
	}{
		{"spiffe://abc.consul/ns/default/dc/dc1/svc/web", true, "web", "dc1", "default", "default"},
		{"spiffe://abc.consul/ap/p1/ns/n1/dc/dc2/svc/api", true, "api", "dc2", "n1", "p1"},
		{"spiffe://abc.consul/agent/client/dc/dc1/id/123", false, "", "", "", ""},
		{"spiffe://abc.consul/ns/default/dc/dc1", false, "", "", "", ""},
		{"https://abc.consul/ns/default/dc/dc1/svc/web", false, "", "", "", ""},
	} {
		u, _ := url.Parse(tc.uri)
		id, err := parseSPIFFE(&x509.Certificate{URIs: []*url.URL{u}})
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.uri, err)
			continue
		}
		if tc.ok && (id.service != tc.svc || id.dc != tc.dc || id.namespace != tc.ns || id.partition != tc.ap || id.trustDomain != "abc.consul") {
			t.Errorf("%s: parsed %+v", tc.uri, id)
		}
	}
}

func TestClassifyMeshError(t *testing.T) {
	alert := func(msg string) error {
		return fmt.Errorf("read: %w", &net.OpError{Op: "remote error", Err: errors.New(msg)})
	}
	for _, tc := range []struct {
		err    error
		denied bool
	}{
		{alert("tls: bad certificate"), true},
		{alert("tls: unknown certificate authority"), true},
		{alert("tls: certificate required"), true},
		{alert("tls: handshake failure"), false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{io.EOF, false},
		{nil, false},
	} {
		got := ClassifyMeshError(tc.err)
		if errors.Is(got, ErrMeshDenied) != tc.denied {
			t.Errorf("%v: denied=%v", tc.err, !tc.denied)
		}
		if tc.err != nil && !errors.Is(got, tc.err) {
			t.Errorf("%v: the original error is lost: %v", tc.err, got)
		}
	}
}

// TestConnectTLS runs the client and server sides against each other with a CA made
// in the test: identity checks, trust of both roots during a rotation, refusals.
func TestConnectTLS(t *testing.T) {
	ca1 := newTestCA(t, "root-1", "11111111-2222-3333-4444-555555555555.consul")
	gwAPI := newFakeConnect(rootList(ca1), ca1.leaf(t, "gateway"))
	webAPI := newFakeConnect(rootList(ca1), ca1.leaf(t, "web"))
	obs := &recordingObserver{}
	gw := startCerts(t, gwAPI, "gateway", obs)
	web := startCerts(t, webAPI, "web", nil)
	auth := &allowAll{}
	addr := nativeServer(t, web, auth)

	d := gw.Dialer("web", "", &net.Dialer{Timeout: 5 * time.Second})
	c := meshClient(d)
	body, err := fetch(c, addr)
	if err != nil {
		t.Fatal(err)
	}
	if want := ServiceURI(ca1.td, "dc1", "gateway") + " " + gw.Leaf().Serial; body != want {
		t.Fatalf("server saw %q, want %q", body, want)
	}
	for i := 0; i < 20; i++ {
		if _, err := fetch(c, addr); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.Connections(); n != 1 {
		t.Fatalf("%d connections for 21 sequential requests, want 1 (pooled)", n)
	}

	t.Run("another service's valid certificate is refused", func(t *testing.T) {
		d := gw.Dialer("api", "", nil)
		_, err := fetch(meshClient(d), addr)
		if !errors.Is(err, ErrPeerRejected) {
			t.Fatalf("err %v, want ErrPeerRejected", err)
		}
	})
	t.Run("another datacenter is refused", func(t *testing.T) {
		_, err := fetch(meshClient(gw.Dialer("web", "dc2", nil)), addr)
		if !errors.Is(err, ErrPeerRejected) {
			t.Fatalf("err %v, want ErrPeerRejected", err)
		}
	})
	t.Run("a certificate of another CA is refused", func(t *testing.T) {
		other := newTestCA(t, "other", ca1.td) // same trust domain, unknown root
		rogue := startCerts(t, newFakeConnect(rootList(other), other.leaf(t, "web")), "web", nil)
		_, err := fetch(meshClient(gw.Dialer("web", "", nil)), nativeServer(t, rogue, auth))
		if !errors.Is(err, ErrPeerRejected) {
			t.Fatalf("err %v, want ErrPeerRejected", err)
		}
	})
	t.Run("a denied client gets ErrMeshDenied", func(t *testing.T) {
		auth.denied.Store(true)
		defer auth.denied.Store(false)
		_, err := fetch(meshClient(gw.Dialer("web", "", nil)), addr)
		// With TLS 1.3 the refusal comes on the first read, after the dial.
		if err = ClassifyMeshError(err); !errors.Is(err, ErrMeshDenied) {
			t.Fatalf("err %v, want ErrMeshDenied", err)
		}
	})
	t.Run("rotation: both roots trusted, new leaf presented", func(t *testing.T) {
		ca2 := newTestCA(t, "root-2", ca1.td)
		both := rootList(ca1, ca2)
		gwAPI.set(both, nil)
		webAPI.set(both, ca2.leaf(t, "web")) // the server moves to the new root first
		waitFor(t, "new roots", func() bool { return len(gw.Roots().IDs) == 2 && len(web.Roots().IDs) == 2 })
		waitFor(t, "web's new leaf", func() bool { return web.Leaf().Cert.Leaf.Issuer.CommonName == "Test CA root-2" })
		fresh := meshClient(gw.Dialer("web", "", nil))
		if _, err := fetch(fresh, addr); err != nil {
			t.Fatalf("old-root client to new-root server: %v", err)
		}
		old := gw.Leaf().Serial
		gwAPI.set(nil, ca2.leaf(t, "gateway"))
		waitFor(t, "gateway's new leaf", func() bool { return gw.Leaf().Serial != old })
		body, err := fetch(meshClient(gw.Dialer("web", "", nil)), addr)
		if err != nil {
			t.Fatal(err)
		}
		if want := gw.Leaf().Serial; body[len(body)-len(want):] != want {
			t.Fatalf("server saw %q, want serial %s", body, want)
		}
		if _, err := fetch(c, addr); err != nil { // the pooled connection keeps working
			t.Fatal(err)
		}
		if obs.leafRotations.Load() != 1 || obs.rootRotations.Load() != 1 {
			t.Fatalf("rotations: leaf %d roots %d, want 1 and 1", obs.leafRotations.Load(), obs.rootRotations.Load())
		}
	})
}

// TestCertsKeepLastWhileAgentFails: failed queries keep the leaf and roots.
func TestCertsKeepLastWhileAgentFails(t *testing.T) {
	ca := newTestCA(t, "root", "abc.consul")
	f := newFakeConnect(rootList(ca), ca.leaf(t, "gateway"))
	c := startCerts(t, f, "gateway", nil)
	leaf := c.Leaf()
	f.mu.Lock()
	f.fail = errors.New("connection refused")
	f.mu.Unlock()
	f.set(nil, nil) // wake the blocking queries into the failure
	waitFor(t, "the failure to be seen", func() bool { return c.Err() != nil })
	if c.Leaf() != leaf || c.Roots() == nil {
		t.Fatal("certificates dropped while the agent fails")
	}
}

func TestNewCertsValidates(t *testing.T) {
	if _, err := NewCerts(nil, ConnectOptions{Service: "x"}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("nil api: %v", err)
	}
	if _, err := NewCerts(newFakeConnect(nil, nil), ConnectOptions{}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("no service: %v", err)
	}
}

// TestBuildInstancesConnect: a Connect answer keeps sidecars and Connect-native
// instances and nothing else; a plain answer keeps neither kind of proxy.
func TestBuildInstancesConnect(t *testing.T) {
	sidecar := entry("web-1-sidecar-proxy", "n1", "10.0.0.1", "10.0.0.1", 21000)
	sidecar.Service.Kind = api.ServiceKindConnectProxy
	native := entry("web-2", "n1", "10.0.0.1", "10.0.0.1", 8443)
	native.Service.Connect = &api.AgentServiceConnect{Native: true}
	plain := entry("web-3", "n1", "10.0.0.1", "10.0.0.1", 8080)
	gw := entry("mesh-gw", "n1", "10.0.0.1", "10.0.0.1", 8443)
	gw.Service.Kind = api.ServiceKindMeshGateway
	entries := []*api.ServiceEntry{sidecar, native, plain, gw}

	got, skips := buildInstances(entries, true)
	var ids []string
	for _, in := range got {
		ids = append(ids, in.ID)
	}
	if len(ids) != 2 || ids[0] != "web-1-sidecar-proxy" || ids[1] != "web-2" || len(skips) != 2 {
		t.Fatalf("connect: %v, skipped %v", ids, skips)
	}
	got, _ = buildInstances(entries, false)
	if len(got) != 2 || got[0].ID != "web-2" || got[1].ID != "web-3" {
		t.Fatalf("plain: %+v", got)
	}
}

// TestWatcherConnectNeedsConnectAPI: a Connect watcher refuses a HealthAPI without
// ConnectMultipleTags.
func TestWatcherConnectNeedsConnectAPI(t *testing.T) {
	h := newFakeHealth(newFakeClock())
	if _, err := NewWatcher(h, WatchOptions{Service: "web", Connect: true}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("err %v", err)
	}
}

// fakeIntentions answers IntentionMatch from a script of answers, blocking like
// fakeConnect once the script is spent.
type fakeIntentions struct {
	f       *fakeConnect // shares its index and wake-ups
	mu      sync.Mutex
	ixns    []*api.Intention
	err     error
	calls   atomic.Int64
	refused atomic.Int64
}

func (fi *fakeIntentions) IntentionMatch(args *api.IntentionMatch, q *api.QueryOptions) (map[string][]*api.Intention, *api.QueryMeta, error) {
	fi.calls.Add(1)
	fi.mu.Lock()
	err := fi.err
	fi.mu.Unlock()
	if err != nil {
		fi.refused.Add(1)
		return nil, nil, err
	}
	idx, err := fi.f.wait(q)
	if err != nil {
		return nil, nil, err
	}
	fi.mu.Lock()
	defer fi.mu.Unlock()
	return map[string][]*api.Intention{args.Names[0]: fi.ixns}, &api.QueryMeta{LastIndex: idx}, nil
}

type intentionObserver struct {
	NopConnectObserver
	changes atomic.Int64
}

func (o *intentionObserver) IntentionsChanged() { o.changes.Add(1) }

func TestCertsFollowIntentions(t *testing.T) {
	ca := newTestCA(t, "root", "abc.consul")
	f := newFakeConnect(rootList(ca), ca.leaf(t, "gateway"))
	fi := &fakeIntentions{f: f, ixns: []*api.Intention{{ID: "1", DestinationName: "users", Action: "allow", ModifyIndex: 5}}}
	obs := &intentionObserver{}
	c, err := NewCerts(f, ConnectOptions{Service: "gateway", WaitTime: time.Second, MinGap: time.Millisecond, Observer: obs, Intentions: fi})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Run(context.Background()) }()
	defer c.Stop()
	<-c.Ready()
	waitFor(t, "the first intentions answer", func() bool { return fi.calls.Load() >= 1 })

	f.set(nil, nil) // another index, same intentions: no change to report
	waitFor(t, "a second answer", func() bool { return fi.calls.Load() >= 3 })
	if n := obs.changes.Load(); n != 0 {
		t.Fatalf("%d changes reported for the same intentions", n)
	}
	fi.mu.Lock()
	fi.ixns = []*api.Intention{{ID: "1", DestinationName: "users", Action: "deny", ModifyIndex: 9}}
	fi.mu.Unlock()
	f.set(nil, nil)
	waitFor(t, "the change reported", func() bool { return obs.changes.Load() == 1 })

	// A token that may not read intentions ends that query only.
	fi.mu.Lock()
	fi.err = api.StatusError{Code: 403, Body: "Permission denied"}
	fi.mu.Unlock()
	f.set(nil, nil)
	waitFor(t, "the refusal", func() bool { return fi.refused.Load() == 1 })
	calls := fi.calls.Load()
	old := c.Leaf().Serial
	f.set(nil, ca.leaf(t, "gateway"))
	waitFor(t, "the leaf still followed", func() bool { return c.Leaf().Serial != old })
	if fi.calls.Load() != calls {
		t.Fatal("the intentions query went on after an ACL refusal")
	}
	if c.Err() != nil {
		t.Fatalf("an intentions refusal shows in Err: %v", c.Err())
	}
}
