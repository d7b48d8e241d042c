package cache

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// Store keeps entries under keys for a time.
type Store interface {
	// Get returns the entry under key, or nil without error when there is none.
	Get(ctx context.Context, key string) (*Entry, error)
	// Set stores e under key for ttl.
	Set(ctx context.Context, key string, e *Entry, ttl time.Duration) error
}

// MemoryStore is a Store in this process, bounded by bytes: the least recently used
// entries are evicted to make room. Expired entries are dropped when met.
type MemoryStore struct {
	max int64
	now func() time.Time

	mu    sync.Mutex // guards everything below
	bytes int64
	lru   *list.List // of *memItem, most recent at the front
	items map[string]*list.Element
	// Evictions counts entries dropped for room (not for expiry).
	evictions int64
}

type memItem struct {
	key     string
	e       *Entry
	size    int64
	expires time.Time
}

// NewMemoryStore returns a store holding at most maxBytes (entry bodies, headers and
// keys, approximately). now is its clock; nil means time.Now.
func NewMemoryStore(maxBytes int64, now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{max: maxBytes, now: now, lru: list.New(), items: map[string]*list.Element{}}
}

// Get implements Store.
func (m *MemoryStore) Get(_ context.Context, key string) (*Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		return nil, nil
	}
	it := el.Value.(*memItem)
	if !m.now().Before(it.expires) {
		m.remove(el)
		return nil, nil
	}
	m.lru.MoveToFront(el)
	return it.e, nil
}

// Set implements Store. An entry larger than the whole store is not kept.
func (m *MemoryStore) Set(_ context.Context, key string, e *Entry, ttl time.Duration) error {
	size := e.size() + int64(len(key))
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		m.remove(el)
	}
	if size > m.max || ttl <= 0 {
		return nil
	}
	for m.bytes+size > m.max {
		m.remove(m.lru.Back())
		m.evictions++
	}
	m.items[key] = m.lru.PushFront(&memItem{key: key, e: e, size: size, expires: m.now().Add(ttl)})
	m.bytes += size
	return nil
}

// remove drops el; m.mu must be held.
func (m *MemoryStore) remove(el *list.Element) {
	it := el.Value.(*memItem)
	m.lru.Remove(el)
	delete(m.items, it.key)
	m.bytes -= it.size
}

// Stats returns the bytes held, the entries held and the evictions so far.
func (m *MemoryStore) Stats() (bytes int64, entries int, evictions int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes, len(m.items), m.evictions
}
