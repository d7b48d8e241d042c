package gateway

import (
	"bytes"
	"testing"
)

// The framer finds every frame end however the stream is cut into reads: short,
// 16-bit and 64-bit lengths, masked and not, empty payloads.
func TestWSFramerBoundaries(t *testing.T) {
	frame := func(n int, masked bool) []byte {
		var h []byte
		mb := byte(0)
		if masked {
			mb = 0x80
		}
		switch {
		case n < 126:
			h = []byte{0x82, mb | byte(n)}
		case n < 1<<16:
			h = []byte{0x82, mb | 126, byte(n >> 8), byte(n)}
		default:
			h = []byte{0x82, mb | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
		}
		if masked {
			h = append(h, 1, 2, 3, 4)
		}
		return append(h, bytes.Repeat([]byte{'p'}, n)...)
	}
	var stream []byte
	var ends []int
	for _, f := range [][]byte{frame(0, false), frame(5, true), frame(300, false), frame(70000, true), frame(125, false), frame(0, true)} {
		stream = append(stream, f...)
		ends = append(ends, len(stream))
	}
	for _, chunk := range []int{1, 2, 3, 7, 64, 1000, len(stream)} {
		var f wsFramer
		var got []int
		pos := 0
		for off := 0; off < len(stream); off += chunk {
			b := stream[off:min(off+chunk, len(stream))]
			for len(b) > 0 {
				n, end := f.scan(b)
				pos += n
				b = b[n:]
				if end {
					got = append(got, pos)
				}
			}
		}
		if len(got) != len(ends) {
			t.Fatalf("chunk %d: ends %v, want %v", chunk, got, ends)
		}
		for i := range got {
			if got[i] != ends[i] {
				t.Fatalf("chunk %d: ends %v, want %v", chunk, got, ends)
			}
		}
		if !f.atBoundary() {
			t.Fatalf("chunk %d: not at a boundary at the end", chunk)
		}
	}
}
