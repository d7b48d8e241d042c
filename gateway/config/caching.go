package config

import (
	"fmt"
	"mime"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Compression is the `compression` block: how routes with compress = true encode
// their answers.
type Compression struct {
	Pos          Pos
	MinBytes     int      // bodies shorter than this pass unencoded; default 1024
	ContentTypes []string // media types, "text/*" allowed; default DefaultCompressTypes
	Encodings    []string // preference among what the client accepts; default zstd, br, gzip
}

// Cache is a `cache "name"` block: a response cache that routes name with cache = "name".
type Cache struct {
	Pos            Pos
	Name           string
	Store          string        // "redis" (shared by replicas) | "memory"; default "memory" without a redis block, else "redis"
	MaxObjectBytes int64         // larger responses stream through unstored; default 1 MiB
	MaxBytes       int64         // memory store: bytes held at most (LRU); default 64 MiB
	DefaultTTL     time.Duration // freshness of responses without any; 0: not stored
	StaleIfError   time.Duration // serve a stale copy this long when the upstream fails
}

// Encodings the gateway can produce, and the compression defaults.
var (
	compressEncodings = []string{"zstd", "br", "gzip"}
	cacheStores       = []string{"redis", "memory"}
)

// DefaultCompressTypes are the media types compressed when content_types is not written.
func DefaultCompressTypes() []string {
	return []string{"text/*", "application/json", "application/javascript", "image/svg+xml"}
}

func defaultCompression() Compression {
	return Compression{MinBytes: 1024, ContentTypes: DefaultCompressTypes(), Encodings: append([]string(nil), compressEncodings...)}
}

func defaultCache() Cache {
	return Cache{MaxObjectBytes: 1 << 20, MaxBytes: 64 << 20}
}

// CacheBlock returns the cache of that name, or nil.
func (c *Config) CacheBlock(name string) *Cache {
	for i := range c.Caches {
		if c.Caches[i].Name == name {
			return &c.Caches[i]
		}
	}
	return nil
}

func (d *decoder) compression(blk *hclsyntax.Block) (Compression, *loc) {
	c := defaultCompression()
	b := d.open(blk.Body, rangePos(blk.TypeRange), "compression", schema{
		attrs: []string{"min_bytes", "content_types", "encodings"},
	})
	c.Pos = b.loc.block
	b.integer("min_bytes", &c.MinBytes)
	b.strs("content_types", &c.ContentTypes)
	b.strs("encodings", &c.Encodings)
	for i := range c.ContentTypes {
		c.ContentTypes[i] = strings.ToLower(strings.TrimSpace(c.ContentTypes[i]))
	}
	for i := range c.Encodings {
		c.Encodings[i] = strings.ToLower(c.Encodings[i])
	}
	return c, b.loc
}

func (d *decoder) cacheBlock(blk *hclsyntax.Block, name string) (Cache, *loc) {
	c := defaultCache()
	b := d.open(blk.Body, rangePos(blk.TypeRange), fmt.Sprintf("cache %q", name), schema{
		attrs: []string{"store", "max_object_bytes", "max_bytes", "default_ttl", "stale_if_error"},
	})
	c.Pos, c.Name = b.loc.block, name
	b.str("store", &c.Store)
	b.int64("max_object_bytes", &c.MaxObjectBytes)
	b.int64("max_bytes", &c.MaxBytes)
	b.duration("default_ttl", &c.DefaultTTL)
	b.duration("stale_if_error", &c.StaleIfError)
	return c, b.loc
}

// routeCaching decodes a route's compress and cache attributes.
func routeCaching(b *body, r *Route) {
	b.boolean("compress", &r.Compress)
	b.str("cache", &r.Cache)
}

// caching validates the compression and cache blocks and the routes that use them.
func (v *validator) caching() {
	c := &v.p.cfg
	if cp := c.Compression; cp != nil {
		l := v.p.compression
		v.atLeast(l, "min_bytes", int64(cp.MinBytes), 0)
		if l.has("encodings") && len(cp.Encodings) == 0 {
			v.errorf(l, "encodings", "encodings must name at least one of %s", strings.Join(compressEncodings, ", "))
		}
		for i, e := range cp.Encodings {
			if !containsStr(compressEncodings, e) {
				v.errorAt(l, l.elem("encodings", i), "encodings: %q is not one of %s", e, strings.Join(compressEncodings, ", "))
			} else if j := indexStr(cp.Encodings, e); j < i {
				v.errorAt(l, l.elem("encodings", i), "encodings: %q is listed twice", e)
			}
		}
		for i, t := range cp.ContentTypes {
			if !validMediaRange(t) {
				v.errorAt(l, l.elem("content_types", i), "content_types: %q is not a media type such as \"text/*\" or \"application/json\"", t)
			}
		}
	}
	first := map[string]*loc{}
	for i := range c.Caches {
		cc, l := &c.Caches[i], v.p.caches[i]
		if f, ok := first[cc.Name]; ok {
			v.d.errorf(l.block, "duplicate cache %q; the first is at %s", cc.Name, f.block)
		} else {
			first[cc.Name] = l
		}
		if cc.Store == "" {
			cc.Store = "memory"
			if c.Redis != nil {
				cc.Store = "redis"
			}
		}
		if l.has("store") {
			v.enum(l, "store", cc.Store, cacheStores)
			if cc.Store == "redis" && c.Redis == nil {
				v.errorf(l, "store", "store = \"redis\" needs a redis block")
			}
		}
		v.positive(l, "max_object_bytes", cc.MaxObjectBytes)
		v.positive(l, "max_bytes", cc.MaxBytes)
		v.atLeast(l, "default_ttl", int64(cc.DefaultTTL), 0)
		v.atLeast(l, "stale_if_error", int64(cc.StaleIfError), 0)
		if cc.Store == "memory" && cc.MaxObjectBytes > cc.MaxBytes {
			v.errorf(l, "max_object_bytes", "max_object_bytes (%d) is larger than max_bytes (%d)", cc.MaxObjectBytes, cc.MaxBytes)
		}
	}
	if c.Compression == nil {
		for i := range c.Routes {
			if c.Routes[i].Compress {
				d := defaultCompression()
				c.Compression = &d
				break
			}
		}
	}
	names := make([]string, len(c.Caches))
	for i := range c.Caches {
		names[i] = c.Caches[i].Name
	}
	for i := range c.Routes {
		r, l := &c.Routes[i], v.p.routes[i]
		if l.has("cache") && c.CacheBlock(r.Cache) == nil {
			v.errorf(l, "cache", "cache %q is not defined%s", r.Cache, didYouMean(r.Cache, names))
		}
	}
}

// validMediaRange accepts "type/subtype", "type/*" and "*/*".
func validMediaRange(t string) bool {
	main, sub, ok := strings.Cut(t, "/")
	if !ok || main == "" || sub == "" {
		return false
	}
	if sub == "*" {
		return main == "*" || !strings.ContainsAny(main, " */;")
	}
	_, _, err := mime.ParseMediaType(t)
	return err == nil
}

func containsStr(ss []string, s string) bool { return indexStr(ss, s) >= 0 }

func indexStr(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}
