package media

import (
	"encoding/binary"
	"image/color"
)

// webpLossless builds a w×h lossless WebP filled with c: a VP8L bitstream without
// transforms whose five prefix codes each hold one symbol, so pixels take zero bits.
// With vp8x it is wrapped in an extended-format VP8X container.
func webpLossless(w, h int, c color.NRGBA, vp8x bool) []byte {
	var bw bitWriter
	bw.put(0x2f, 8) // VP8L signature
	bw.put(uint64(w-1), 14)
	bw.put(uint64(h-1), 14)
	alpha := uint64(0)
	if c.A != 0xff {
		alpha = 1
	}
	bw.put(alpha, 1)
	bw.put(0, 3)                                         // version
	bw.put(0, 1)                                         // no transform
	bw.put(0, 1)                                         // no color cache
	bw.put(0, 1)                                         // no meta prefix codes
	for _, sym := range []uint8{c.G, c.R, c.B, c.A, 0} { // green, red, blue, alpha, distance
		bw.put(1, 1) // simple code
		bw.put(0, 1) // one symbol
		if sym < 2 {
			bw.put(0, 1)
			bw.put(uint64(sym), 1)
		} else {
			bw.put(1, 1)
			bw.put(uint64(sym), 8)
		}
	}
	body := chunk("VP8L", bw.bytes())
	if vp8x {
		x := make([]byte, 10)
		if alpha == 1 {
			x[0] = 0x10
		}
		put24(x[4:], uint32(w-1))
		put24(x[7:], uint32(h-1))
		body = append(chunk("VP8X", x), body...)
	}
	out := append([]byte("RIFF\x00\x00\x00\x00WEBP"), body...)
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)-8))
	return out
}

func chunk(fourcc string, data []byte) []byte {
	c := append([]byte(fourcc), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(c[4:], uint32(len(data)))
	c = append(c, data...)
	if len(data)%2 == 1 {
		c = append(c, 0) // chunks are padded to even length
	}
	return c
}

func put24(b []byte, v uint32) { b[0], b[1], b[2] = byte(v), byte(v>>8), byte(v>>16) }

// bitWriter packs bits least significant first, as VP8L reads them.
type bitWriter struct {
	buf []byte
	acc uint64
	n   uint
}

func (b *bitWriter) put(v uint64, bits uint) {
	b.acc |= v << b.n
	for b.n += bits; b.n >= 8; b.n -= 8 {
		b.buf = append(b.buf, byte(b.acc))
		b.acc >>= 8
	}
}

func (b *bitWriter) bytes() []byte {
	if b.n > 0 {
		return append(b.buf, byte(b.acc))
	}
	return b.buf
}
