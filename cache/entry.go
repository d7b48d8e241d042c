package cache

import (
	"encoding/binary"
	"errors"
	"net/http"
	"slices"
	"time"
)

// Entry is one stored answer (or, with Status 0, the Vary marker of a key: the names of
// the request headers its variants are keyed by).
type Entry struct {
	Status     int
	Header     http.Header   // the upstream's headers, minus Age; every slice has cap == len
	Body       []byte        // the whole body
	Stored     time.Time     // when the answer was received
	InitialAge time.Duration // corrected initial age (RFC 9111 §4.2.3) at Stored
	Lifetime   time.Duration // freshness lifetime (RFC 9111 §4.2.1)
	Vary       []string      // canonical names of the request headers in the response's Vary
	VaryValues []string      // the request's values of Vary, parallel to Vary
}

// Age is the entry's current age (RFC 9111 §4.2.3).
func (e *Entry) Age(now time.Time) time.Duration {
	a := e.InitialAge + now.Sub(e.Stored)
	if a < 0 {
		return 0
	}
	return a
}

// Fresh reports whether the entry is still fresh at now.
func (e *Entry) Fresh(now time.Time) bool { return e.Age(now) < e.Lifetime }

// Staleness is how long the entry has been stale at now (0 while fresh).
func (e *Entry) Staleness(now time.Time) time.Duration {
	if s := e.Age(now) - e.Lifetime; s > 0 {
		return s
	}
	return 0
}

// Matches reports whether a request with header h selects this entry: its values of
// every Vary header equal those of the request that stored it (RFC 9111 §4.1).
func (e *Entry) Matches(h http.Header) bool {
	for i, name := range e.Vary {
		if varyValue(h, name) != e.VaryValues[i] {
			return false
		}
	}
	return true
}

// size approximates the entry's memory footprint.
func (e *Entry) size() int64 {
	n := int64(len(e.Body)) + 128
	for k, vv := range e.Header {
		n += int64(len(k)) + 16
		for _, v := range vv {
			n += int64(len(v)) + 16
		}
	}
	for i := range e.Vary {
		n += int64(len(e.Vary[i]) + len(e.VaryValues[i]) + 32)
	}
	return n
}

// ErrCorrupt is returned for a stored value that does not decode.
var ErrCorrupt = errors.New("cache: corrupt entry")

const entryVersion = 1

// MarshalBinary encodes the entry for a store that keeps bytes (Redis).
func (e *Entry) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, len(e.Body)+512)
	b = append(b, 'G', entryVersion)
	b = binary.AppendUvarint(b, uint64(e.Status))
	b = binary.AppendVarint(b, e.Stored.UnixNano())
	b = binary.AppendVarint(b, int64(e.InitialAge))
	b = binary.AppendVarint(b, int64(e.Lifetime))
	b = binary.AppendUvarint(b, uint64(len(e.Vary)))
	for i := range e.Vary {
		b = appendString(b, e.Vary[i])
		b = appendString(b, e.VaryValues[i])
	}
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	for k, vv := range e.Header {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(vv)))
		for _, v := range vv {
			b = appendString(b, v)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(e.Body)))
	return append(b, e.Body...), nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// UnmarshalBinary decodes what MarshalBinary encoded. The body aliases data.
func (e *Entry) UnmarshalBinary(data []byte) error {
	d := decoder{b: data, ok: true}
	if len(data) < 2 || data[0] != 'G' || data[1] != entryVersion {
		return ErrCorrupt
	}
	d.b = d.b[2:]
	e.Status = int(d.uvarint())
	e.Stored = time.Unix(0, d.varint())
	e.InitialAge = time.Duration(d.varint())
	e.Lifetime = time.Duration(d.varint())
	nv := d.count()
	e.Vary, e.VaryValues = make([]string, 0, nv), make([]string, 0, nv)
	for i := 0; i < nv && d.ok; i++ {
		e.Vary = append(e.Vary, d.str())
		e.VaryValues = append(e.VaryValues, d.str())
	}
	nh := d.count()
	e.Header = make(http.Header, nh)
	for i := 0; i < nh && d.ok; i++ {
		k := d.str()
		n := d.count()
		vv := make([]string, 0, n)
		for j := 0; j < n && d.ok; j++ {
			vv = append(vv, d.str())
		}
		e.Header[k] = slices.Clip(vv)
	}
	n := d.count()
	if !d.ok || n != len(d.b) {
		return ErrCorrupt
	}
	e.Body = d.b
	return nil
}

type decoder struct {
	b  []byte
	ok bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.ok, d.b = false, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.ok, d.b = false, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length that must fit in what is left.
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.ok = false
		return 0
	}
	return int(v)
}

func (d *decoder) str() string {
	n := d.count()
	if !d.ok {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
