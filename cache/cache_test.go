package cache

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestKey(t *testing.T) {
	for _, tc := range []struct{ host, path, q, want string }{
		{"API.example.com", "/a", "", "GET api.example.com/a"},
		{"a:80", "/a", "b=2&a=1", "GET a/a?a=1&b=2"},
		{"a", "/a", "x=%2F&&a=1", "GET a/a?a=1&x=%2F"},
		{"a:8080", "/a", "", "GET a:8080/a"},
	} {
		if got := Key(tc.host, tc.path, tc.q); got != tc.want {
			t.Errorf("Key(%q,%q,%q) = %q, want %q", tc.host, tc.path, tc.q, got, tc.want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		method string
		h      http.Header
		want   func(Request) bool
		what   string
	}{
		{"POST", nil, func(r Request) bool { return r.Bypass }, "POST bypasses"},
		{"GET", hdr("Range", "bytes=0-1"), func(r Request) bool { return r.Bypass }, "Range bypasses"},
		{"HEAD", nil, func(r Request) bool { return !r.Bypass && r.Key == "GET h/p" }, "HEAD looks up GET"},
		{"GET", hdr("Cache-Control", "no-cache"), func(r Request) bool { return r.NoCache && !r.NoStore }, "no-cache"},
		{"GET", hdr("Cache-Control", "no-store"), func(r Request) bool { return r.NoStore && !r.NoCache }, "no-store"},
		{"GET", hdr("Cache-Control", "max-age=0"), func(r Request) bool { return r.NoCache }, "max-age=0"},
		{"GET", hdr("Cache-Control", "max-age=5"), func(r Request) bool { return r.MaxAge == 5*time.Second }, "max-age"},
		{"GET", hdr("Pragma", "no-cache"), func(r Request) bool { return r.NoCache }, "Pragma"},
		{"GET", hdr("Pragma", "no-cache", "Cache-Control", "max-age=9"), func(r Request) bool { return !r.NoCache }, "Pragma with Cache-Control"},
	} {
		h := tc.h
		if h == nil {
			h = http.Header{}
		}
		if r := Classify(tc.method, "h", "/p", "", h); !tc.want(r) {
			t.Errorf("%s: got %+v", tc.what, r)
		}
	}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	get := Request{Method: "GET", Header: http.Header{}}
	auth := Request{Method: "GET", Header: hdr("Authorization", "Bearer x")}
	for _, tc := range []struct {
		name   string
		req    Request
		status int
		h      http.Header
		ttl    time.Duration
		life   time.Duration
		reason Reason
	}{
		{"max-age", get, 200, hdr("Cache-Control", "max-age=60"), 0, time.Minute, Storable},
		{"s-maxage wins", get, 200, hdr("Cache-Control", "max-age=60, s-maxage=10"), 0, 10 * time.Second, Storable},
		{"expires", get, 200, hdr("Expires", now.Add(time.Hour).Format(http.TimeFormat), "Date", now.Format(http.TimeFormat)), 0, time.Hour, Storable},
		{"bad expires", get, 200, hdr("Expires", "0"), time.Minute, 0, ReasonNoFreshness},
		{"nothing", get, 200, hdr(), 0, 0, ReasonNoFreshness},
		{"default ttl", get, 200, hdr(), time.Minute, time.Minute, Storable},
		{"default ttl not for 302", get, 302, hdr(), time.Minute, 0, ReasonNoFreshness},
		{"private", get, 200, hdr("Cache-Control", "private, max-age=60"), 0, 0, ReasonPrivate},
		{"no-store", get, 200, hdr("Cache-Control", "no-store"), time.Minute, 0, ReasonNoStore},
		{"no-cache", get, 200, hdr("Cache-Control", "no-cache, max-age=60"), 0, 0, ReasonNoCache},
		{"set-cookie", get, 200, hdr("Cache-Control", "max-age=60", "Set-Cookie", "a=b"), 0, 0, ReasonCookie},
		{"authorization", auth, 200, hdr("Cache-Control", "max-age=60"), 0, 0, ReasonAuth},
		{"authorization public", auth, 200, hdr("Cache-Control", "public, max-age=60"), 0, time.Minute, Storable},
		{"authorization s-maxage", auth, 200, hdr("Cache-Control", "s-maxage=60"), 0, time.Minute, Storable},
		{"vary star", get, 200, hdr("Cache-Control", "max-age=60", "Vary", "*"), 0, 0, ReasonVaryStar},
		{"500", get, 500, hdr("Cache-Control", "max-age=60"), 0, 0, ReasonStatus},
		{"206", get, 206, hdr("Cache-Control", "max-age=60"), 0, 0, ReasonStatus},
		{"404 default", get, 404, hdr(), time.Second, time.Second, Storable},
		{"HEAD", Request{Method: "HEAD", Header: http.Header{}}, 200, hdr("Cache-Control", "max-age=60"), 0, 0, ReasonMethod},
		{"request no-store", Request{Method: "GET", Header: http.Header{}, NoStore: true}, 200, hdr("Cache-Control", "max-age=60"), 0, 0, ReasonRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			life, reason := Decide(&tc.req, tc.status, tc.h, now, tc.ttl)
			if life != tc.life || reason != tc.reason {
				t.Fatalf("Decide = %v, %q; want %v, %q", life, reason, tc.life, tc.reason)
			}
		})
	}
}

func TestInitialAge(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h := hdr("Age", "30", "Date", now.Format(http.TimeFormat))
	if got := initialAge(h, now.Add(-2*time.Second), now); got != 32*time.Second {
		t.Fatalf("initial age %v, want 32s (Age plus the response delay)", got)
	}
	h = hdr("Date", now.Add(-time.Minute).Format(http.TimeFormat))
	if got := initialAge(h, now, now); got != time.Minute {
		t.Fatalf("initial age %v, want the apparent 1m", got)
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := &Entry{Status: 200, Header: hdr("Content-Type", "text/plain", "X-A", "1", "X-A", "2"), Body: []byte("hello"),
		Stored: time.Unix(1700000000, 123), InitialAge: 3 * time.Second, Lifetime: time.Minute,
		Vary: []string{"Accept-Language"}, VaryValues: []string{"en"}}
	b, _ := e.MarshalBinary()
	var d Entry
	if err := d.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(d) != fmt.Sprint(*e) || !d.Stored.Equal(e.Stored) {
		t.Fatalf("round trip:\n%+v\n%+v", d, *e)
	}
	for i := 0; i < len(b); i++ {
		var x Entry
		if err := x.UnmarshalBinary(b[:i]); err == nil {
			t.Fatalf("a value cut at %d of %d bytes decoded", i, len(b))
		}
	}
}

func TestMemoryStoreLRU(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	e := func(n int) *Entry { return &Entry{Status: 200, Body: make([]byte, n)} }
	one := e(100).size() + 1
	m := NewMemoryStore(3*one, clock)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		m.Set(ctx, k, e(100), time.Minute)
	}
	m.Get(ctx, "a") // a is now the most recent
	m.Set(ctx, "d", e(100), time.Minute)
	if got, _ := m.Get(ctx, "b"); got != nil {
		t.Fatal("b, the least recently used, was not evicted")
	}
	for _, k := range []string{"a", "c", "d"} {
		if got, _ := m.Get(ctx, k); got == nil {
			t.Fatalf("%s evicted", k)
		}
	}
	if bytes, n, ev := m.Stats(); bytes > 3*one || n != 3 || ev != 1 {
		t.Fatalf("stats %d bytes, %d entries, %d evictions", bytes, n, ev)
	}
	m.Set(ctx, "huge", e(int(4*one)), time.Minute)
	if got, _ := m.Get(ctx, "huge"); got != nil {
		t.Fatal("an entry larger than the store was kept")
	}
	now = now.Add(time.Minute)
	if got, _ := m.Get(ctx, "a"); got != nil {
		t.Fatal("expired entry served")
	}
}

func TestVaryVariants(t *testing.T) {
	now := time.Unix(1000, 0)
	c := New(Options{Store: NewMemoryStore(1<<20, func() time.Time { return now }), Now: func() time.Time { return now }})
	ctx := context.Background()
	put := func(lang string) {
		req := Classify("GET", "h", "/p", "", hdr("Accept-Language", lang))
		resp := hdr("Cache-Control", "max-age=60", "Vary", "accept-language")
		life, reason := c.Decide(&req, 200, resp, now)
		if reason != Storable {
			t.Fatal(reason)
		}
		if err := c.Put(ctx, &req, c.NewEntry(&req, 200, resp, []byte(lang), life, now, now)); err != nil {
			t.Fatal(err)
		}
	}
	put("en")
	put("fr")
	for _, lang := range []string{"en", "fr"} {
		req := Classify("GET", "h", "/p", "", hdr("Accept-Language", lang))
		lk, err := c.Lookup(ctx, &req)
		if err != nil || lk.Entry == nil || string(lk.Entry.Body) != lang {
			t.Fatalf("%s: %+v %v", lang, lk, err)
		}
	}
	req := Classify("GET", "h", "/p", "", hdr("Accept-Language", "de"))
	if lk, _ := c.Lookup(ctx, &req); lk.Entry != nil || !lk.VaryMiss {
		t.Fatalf("de: %+v, want a vary miss", lk)
	}
}

func TestFlights(t *testing.T) {
	c := New(Options{Store: NewMemoryStore(1<<20, nil)})
	f, leader := c.Join("k")
	if !leader {
		t.Fatal("first is not the leader")
	}
	var wg sync.WaitGroup
	got := make(chan *Entry, 10)
	for i := 0; i < 10; i++ {
		g, l := c.Join("k")
		if l || g != f {
			t.Fatal("second joined another flight")
		}
		wg.Add(1)
		go func() { defer wg.Done(); got <- g.Wait(context.Background(), http.Header{}) }()
	}
	e := &Entry{Status: 200}
	c.Finish(f, e)
	c.Finish(f, nil) // ignored
	wg.Wait()
	close(got)
	for g := range got {
		if g != e {
			t.Fatal("a waiter did not get the leader's entry")
		}
	}
	if _, l := c.Join("k"); !l {
		t.Fatal("a finished flight was joined")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f2, _ := c.Join("k")
	if f2.Wait(ctx, nil) != nil {
		t.Fatal("Wait past its context returned an entry")
	}
}
