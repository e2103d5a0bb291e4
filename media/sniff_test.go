package media

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"io"
	"strings"
	"testing"
)

// lossyWebP is a 1×1 VP8 (lossy) file, the one browsers are commonly probed with.
var lossyWebP, _ = base64.StdEncoding.DecodeString("UklGRiIAAABXRUJQVlA4IBYAAAAwAQCdASoBAAEADsD+JaQAA3AAAAAA")

// pngWithIHDR returns a 1×1 PNG whose IHDR says w×h (with a correct checksum).
func pngWithIHDR(t testing.TB, w, h uint32) []byte {
	b := bytes.Clone(pngOf(t, 1, 1))
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// pngIHDR returns a 1×1 PNG whose IHDR says bit depth, colour type, compression,
// filter and interlace methods as given (with a correct checksum). The pixel data
// is left as it was: Probe reads headers only.
func pngIHDR(t testing.TB, depth, colour, compression, filter, interlace byte) []byte {
	b := bytes.Clone(pngOf(t, 1, 1))
	b[24], b[25], b[26], b[27], b[28] = depth, colour, compression, filter, interlace
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// declaring returns a small well-formed file of each format whose header says w×h:
// what a decompression bomb looks like to Probe.
func declaring(t testing.TB, format string, w, h int) []byte {
	switch format {
	case "png":
		return pngWithIHDR(t, uint32(w), uint32(h))
	case "gif":
		b := gifOf(t, 1, 1)
		binary.LittleEndian.PutUint16(b[6:], uint16(w))
		binary.LittleEndian.PutUint16(b[8:], uint16(h))
		return b
	case "jpeg":
		b := jpegOf(t, 1, 1)
		sof := bytes.Index(b, []byte{0xff, 0xc0})
		binary.BigEndian.PutUint16(b[sof+5:], uint16(h))
		binary.BigEndian.PutUint16(b[sof+7:], uint16(w))
		return b
	case "webp": // the extended format's canvas has 24 bits a side
		b := webpLossless(1, 1, color.NRGBA{A: 0xff}, true)
		put24(b[24:], uint32(w-1))
		put24(b[27:], uint32(h-1))
		return b
	case "webp lossy": // 14 bits a side
		b := bytes.Clone(lossyWebP)
		binary.LittleEndian.PutUint16(b[26:], uint16(w))
		binary.LittleEndian.PutUint16(b[28:], uint16(h))
		return b
	}
	t.Fatalf("no format %q", format)
	return nil
}

func TestProbe(t *testing.T) {
	blue := color.NRGBA{B: 255, A: 255}
	png := pngOf(t, 64, 48)
	jpg := jpegOf(t, 33, 17)
	gf := gifOf(t, 20, 10)
	webp := webpLossless(300, 200, blue, false)
	sof := bytes.Index(jpg, []byte{0xff, 0xc0})

	edit := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	tests := []struct {
		name  string
		data  []byte
		mime  string
		w, h  int
		wrong string // non-empty: Probe must refuse as unsupported, saying this
		large string // non-empty: Probe must refuse as too large, saying this
	}{
		{name: "png", data: png, mime: "image/png", w: 64, h: 48},
		{name: "jpeg", data: jpg, mime: "image/jpeg", w: 33, h: 17},
		{name: "jpeg zero padded", data: append(bytes.Clone(jpg), 0, 0, 0, 0), mime: "image/jpeg", w: 33, h: 17},
		{name: "jpeg fill bytes before SOF", data: edit(jpg, func(b []byte) []byte {
			return append(b[:sof:sof], append([]byte{0xff, 0xff}, b[sof:]...)...)
		}), mime: "image/jpeg", w: 33, h: 17},
		{name: "jpeg progressive SOF2", data: edit(jpg, func(b []byte) []byte { b[sof+1] = 0xc2; return b }), mime: "image/jpeg", w: 33, h: 17},
		{name: "jpeg lossless SOF15", data: edit(jpg, func(b []byte) []byte { b[sof+1] = 0xcf; return b }), mime: "image/jpeg", w: 33, h: 17},
		{name: "jpeg empty comment", data: edit(jpg, func(b []byte) []byte {
			return append(b[:sof:sof], append([]byte{0xff, 0xfe, 0x00, 0x02}, b[sof:]...)...)
		}), mime: "image/jpeg", w: 33, h: 17},
		{name: "jpeg frame header of 8 bytes", data: edit(jpg, func(b []byte) []byte { b[sof+2], b[sof+3] = 0, 8; return b }), mime: "image/jpeg", w: 33, h: 17},
		{name: "jpeg frame header right after SOI", data: []byte{
			0xff, 0xd8,
			0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x10, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01,
			0xff, 0xd9,
		}, mime: "image/jpeg", w: 16, h: 16},
		{name: "jpeg 1100 restart markers before the frame", data: edit(jpg, func(b []byte) []byte {
			return append(append([]byte{0xff, 0xd8}, bytes.Repeat([]byte{0xff, 0xd0}, 1100)...), b[2:]...)
		}), wrong: "no frame header in the first 1024 markers"},
		{name: "jpeg segment ends at the end of the file", data: []byte{0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00}, wrong: "truncated"},
		{name: "jpeg segment a byte past the end", data: []byte{0xff, 0xd8, 0xff, 0xe0, 0x00, 0x05, 0x00, 0x00}, wrong: "bad segment length"},
		{name: "jpeg cut in a length field", data: []byte{0xff, 0xd8, 0xff, 0xe0, 0x00}, wrong: "truncated"},
		{name: "gif", data: gf, mime: "image/gif", w: 20, h: 10},
		{name: "webp lossless", data: webp, mime: "image/webp", w: 300, h: 200},
		{name: "webp extended", data: webpLossless(5, 7, color.NRGBA{A: 0x80}, true), mime: "image/webp", w: 5, h: 7},
		{name: "webp lossy", data: lossyWebP, mime: "image/webp", w: 1, h: 1},
		{name: "png 30000 wide", data: pngWithIHDR(t, 30000, 1), mime: "image/png", w: 30000, h: 1},

		{name: "empty", data: nil, wrong: "unknown"},
		{name: "text", data: []byte("hello, world\n"), wrong: "unknown"},
		{name: "html", data: []byte("<!doctype html><script>alert(1)</script>"), wrong: "unknown"},
		{name: "png signature only", data: png[:8], wrong: "truncated"},
		{name: "png truncated", data: png[:len(png)-1], wrong: "IEND"},
		{name: "png without IEND", data: png[:len(png)-12], wrong: "IEND"},
		{name: "png bad IHDR checksum", data: edit(png, func(b []byte) []byte { b[29]++; return b }), wrong: "checksum"},
		{name: "png IHDR not first", data: edit(png, func(b []byte) []byte { copy(b[12:], "tEXt"); return b }), wrong: "IHDR"},
		{name: "png zero width", data: pngWithIHDR(t, 0, 5), wrong: "dimensions"},
		{name: "png zero height", data: pngWithIHDR(t, 5, 0), wrong: "dimensions"},
		{name: "png 30001 wide", data: pngWithIHDR(t, 30001, 1), large: "more than 30000 on a side"},
		{name: "png 30001 tall", data: pngWithIHDR(t, 1, 30001), large: "more than 30000 on a side"},
		{name: "png 30000 tall", data: pngWithIHDR(t, 1, 30000), mime: "image/png", w: 1, h: 30000},
		{name: "png header and end only", data: append(bytes.Clone(pngOf(t, 1, 1)[:33]), pngIEND...), mime: "image/png", w: 1, h: 1},
		{name: "png cut after IHDR", data: png[:40], wrong: "png: truncated"},
		{name: "png 4G tall", data: pngWithIHDR(t, 1, 1<<32-1), large: "on a side"},
		{name: "png 4G square", data: pngWithIHDR(t, 1<<32-1, 1<<32-1), large: "on a side"},
		{name: "png 40 megapixels", data: pngWithIHDR(t, 8000, 5000), mime: "image/png", w: 8000, h: 5000},
		{name: "png 30000x1333", data: pngWithIHDR(t, 30000, 1333), mime: "image/png", w: 30000, h: 1333},
		{name: "png 8000 more pixels", data: pngWithIHDR(t, 8000, 5001), large: "40.0 megapixels, more than 40"},
		{name: "png 30000x1334", data: pngWithIHDR(t, 30000, 1334), large: "megapixels"},
		{name: "png bomb", data: declaring(t, "png", 20000, 20000), large: "20000x20000 is 400.0 megapixels"},
		{name: "gif bomb", data: declaring(t, "gif", 20000, 20000), large: "megapixels"},
		{name: "jpeg bomb", data: declaring(t, "jpeg", 20000, 20000), large: "megapixels"},
		{name: "webp bomb", data: declaring(t, "webp", 20000, 20000), large: "megapixels"},
		{name: "webp lossy bomb", data: declaring(t, "webp lossy", 16383, 16383), large: "megapixels"},
		{name: "webp 16M wide", data: declaring(t, "webp", 1<<24, 1), large: "on a side"},
		{name: "jpeg 40 megapixels", data: declaring(t, "jpeg", 5000, 8000), mime: "image/jpeg", w: 5000, h: 8000},
		{name: "webp 40 megapixels", data: declaring(t, "webp", 5000, 8000), mime: "image/webp", w: 5000, h: 8000},

		// IHDR fields the PNG specification allows, and every one it does not.
		{name: "png grey 1 bit", data: pngIHDR(t, 1, 0, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png grey 2 bits", data: pngIHDR(t, 2, 0, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png grey 4 bits", data: pngIHDR(t, 4, 0, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png grey 8 bits", data: pngIHDR(t, 8, 0, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png grey 16 bits", data: pngIHDR(t, 16, 0, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png palette 1 bit", data: pngIHDR(t, 1, 3, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png palette 2 bits", data: pngIHDR(t, 2, 3, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png palette 4 bits", data: pngIHDR(t, 4, 3, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png palette 8 bits", data: pngIHDR(t, 8, 3, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png RGB 8 bits", data: pngIHDR(t, 8, 2, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png RGB 16 bits", data: pngIHDR(t, 16, 2, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png grey+alpha 8 bits", data: pngIHDR(t, 8, 4, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png grey+alpha 16 bits", data: pngIHDR(t, 16, 4, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png RGBA 8 bits", data: pngIHDR(t, 8, 6, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png RGBA 16 bits", data: pngIHDR(t, 16, 6, 0, 0, 0), mime: "image/png", w: 1, h: 1},
		{name: "png interlaced", data: pngIHDR(t, 8, 6, 0, 0, 1), mime: "image/png", w: 1, h: 1},
		{name: "png grey 3 bits", data: pngIHDR(t, 3, 0, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png grey 0 bits", data: pngIHDR(t, 0, 0, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png grey 32 bits", data: pngIHDR(t, 32, 0, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png palette 16 bits", data: pngIHDR(t, 16, 3, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png palette 3 bits", data: pngIHDR(t, 3, 3, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png RGB 1 bit", data: pngIHDR(t, 1, 2, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png RGB 2 bits", data: pngIHDR(t, 2, 2, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png RGB 4 bits", data: pngIHDR(t, 4, 2, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png grey+alpha 4 bits", data: pngIHDR(t, 4, 4, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png RGBA 1 bit", data: pngIHDR(t, 1, 6, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png RGBA 32 bits", data: pngIHDR(t, 32, 6, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png colour type 1", data: pngIHDR(t, 8, 1, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png colour type 5", data: pngIHDR(t, 8, 5, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png colour type 7", data: pngIHDR(t, 8, 7, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png colour type 255", data: pngIHDR(t, 8, 255, 0, 0, 0), wrong: "invalid IHDR"},
		{name: "png compression method 1", data: pngIHDR(t, 8, 6, 1, 0, 0), wrong: "invalid IHDR"},
		{name: "png filter method 1", data: pngIHDR(t, 8, 6, 0, 1, 0), wrong: "invalid IHDR"},
		{name: "png interlace method 2", data: pngIHDR(t, 8, 6, 0, 0, 2), wrong: "invalid IHDR"},
		{name: "png interlace method 255", data: pngIHDR(t, 8, 6, 0, 0, 255), wrong: "invalid IHDR"},
		{name: "jpeg SOI only", data: []byte{0xff, 0xd8}, wrong: "truncated"},
		{name: "jpeg without EOI", data: jpg[:len(jpg)-2], wrong: "EOI"},
		{name: "jpeg trailing garbage", data: append(bytes.Clone(jpg), "<script>"...), wrong: "EOI"},
		{name: "jpeg DHT where SOF was", data: edit(jpg, func(b []byte) []byte { b[sof+1] = 0xc4; return b }), wrong: "before the frame header"},
		{name: "jpeg JPG marker C8 where SOF was", data: edit(jpg, func(b []byte) []byte { b[sof+1] = 0xc8; return b }), wrong: "before the frame header"},
		{name: "jpeg DAC marker CC where SOF was", data: edit(jpg, func(b []byte) []byte { b[sof+1] = 0xcc; return b }), wrong: "before the frame header"},
		{name: "jpeg segment overruns", data: edit(jpg, func(b []byte) []byte { b[4], b[5] = 0xff, 0xf0; return b[:400] }), wrong: "segment length"},
		{name: "jpeg zero height", data: edit(jpg, func(b []byte) []byte { b[sof+5], b[sof+6] = 0, 0; return b }), wrong: "dimensions"},
		{name: "gif without trailer", data: gf[:len(gf)-1], wrong: "trailer"},
		{name: "gif without image", data: append(bytes.Clone(gf[:13]), 0x3b), mime: "image/gif", w: 20, h: 10},
		{name: "gif header only", data: []byte("GIF89a"), wrong: "truncated"},
		{name: "gif zero size", data: edit(gf, func(b []byte) []byte { b[6], b[7] = 0, 0; return b }), wrong: "dimensions"},
		{name: "gif too wide", data: edit(gf, func(b []byte) []byte { b[6], b[7] = 0x40, 0x9c; return b }), large: "40000x10 pixels"},
		{name: "webp RIFF size too small", data: edit(webp, func(b []byte) []byte { b[4]--; return b }), wrong: "RIFF size"},
		{name: "webp truncated", data: webp[:len(webp)-2], wrong: "RIFF size"},
		{name: "webp unknown chunk", data: edit(webp, func(b []byte) []byte { copy(b[12:], "ALPH"); return b }), wrong: "first chunk"},
		{name: "webp chunk overruns", data: edit(webp, func(b []byte) []byte { b[17] = 0x10; return b }), wrong: "overruns"},
		{name: "webp bad VP8L signature", data: edit(webp, func(b []byte) []byte { b[20] = 0x2e; return b }), wrong: "VP8L header"},
		{name: "webp VP8 chunk of 10 bytes", data: riff(chunk("VP8 ", lossyWebP[20:30])), mime: "image/webp", w: 1, h: 1},
		{name: "webp VP8 chunk of 9 bytes", data: riff(chunk("VP8 ", lossyWebP[20:29])), wrong: "short VP8 chunk"},
		{name: "webp VP8L chunk of 5 bytes", data: riff(chunk("VP8L", webp[20:25])), mime: "image/webp", w: 300, h: 200},
		{name: "webp VP8L chunk of 4 bytes", data: riff(chunk("VP8L", webp[20:24])), wrong: "short VP8L chunk"},
		{name: "webp VP8X of odd length alone", data: riff(chunk("VP8X", make([]byte, 11))), wrong: "without image data"},
		{name: "webp VP8X of 9 bytes", data: riff(chunk("VP8X", make([]byte, 9)), chunk("VP8L", webp[20:])), wrong: "short VP8X chunk"},
		{name: "webp VP8 not key frame", data: edit(lossyWebP, func(b []byte) []byte { b[20] |= 1; return b }), wrong: "key frame"},
		{name: "webp VP8X alone", data: edit(webpLossless(5, 7, blue, true), func(b []byte) []byte {
			b = b[:30]
			binary.LittleEndian.PutUint32(b[4:], 22)
			return b
		}), wrong: "without image data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// countingReader fails the test on any read outside the file.
			got, err := Probe(&countingReader{r: bytes.NewReader(tt.data), size: int64(len(tt.data)), t: t}, int64(len(tt.data)))
			if tt.large != "" {
				if !errors.Is(err, ErrImageTooLarge) || errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tt.large) {
					t.Fatalf("Probe = %+v, %v; want ErrImageTooLarge saying %q", got, err, tt.large)
				}
				return
			}
			if tt.wrong != "" {
				if !errors.Is(err, ErrUnsupported) || !bytes.Contains([]byte(err.Error()), []byte(tt.wrong)) {
					t.Fatalf("Probe = %+v, %v; want ErrUnsupported about %q", got, err, tt.wrong)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := (Info{tt.mime, tt.w, tt.h}); got != want {
				t.Fatalf("Probe = %+v, want %+v", got, want)
			}
		})
	}
}

// riff wraps chunks into a WebP file.
func riff(chunks ...[]byte) []byte {
	out := []byte("RIFF\x00\x00\x00\x00WEBP")
	for _, c := range chunks {
		out = append(out, c...)
	}
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)-8))
	return out
}

// A file that fits in the first read is judged from that read alone.
func TestProbeReadsSmallFilesOnce(t *testing.T) {
	for name, data := range map[string][]byte{
		"png": pngOf(t, 8, 8), "gif": gifOf(t, 8, 8), "jpeg": jpegOf(t, 8, 8),
		"webp": webpLossless(8, 8, color.NRGBA{A: 0xff}, true), "webp lossy": lossyWebP,
	} {
		if len(data) > headLen {
			t.Fatalf("%s: %d bytes, more than one read", name, len(data))
		}
		cr := &countingReader{r: bytes.NewReader(data), size: int64(len(data)), t: t}
		if _, err := Probe(cr, cr.size); err != nil || cr.calls != 1 {
			t.Errorf("%s: %v after %d reads, want one", name, err, cr.calls)
		}
	}
}

// The hand-built lossless WebP is pinned to a fixture that decodes as 3×2 in libwebp-compatible decoders.
func TestWebPFixture(t *testing.T) {
	want := readFile(t, "testdata/lossless-3x2.webp")
	if got := webpLossless(3, 2, color.NRGBA{R: 0x12, G: 0x80, B: 0xfe, A: 0xff}, false); !bytes.Equal(got, want) {
		t.Fatalf("encoder drifted from fixture:\n got %x\nwant %x", got, want)
	}
	in, err := Probe(bytes.NewReader(want), int64(len(want)))
	if err != nil || in != (Info{"image/webp", 3, 2}) {
		t.Fatalf("Probe = %+v, %v", in, err)
	}
}

// A reader that fails is an IO error, not a verdict on the file.
func TestProbeReadError(t *testing.T) {
	png := pngOf(t, 4, 4)
	r := failAfter{ReaderAt: bytes.NewReader(png), n: 64}
	_, err := Probe(r, 1<<20) // tail is beyond what the reader can give
	if err == nil || errors.Is(err, ErrUnsupported) {
		t.Fatalf("err = %v, want a plain read error", err)
	}
}

type failAfter struct {
	io.ReaderAt
	n int64
}

func (f failAfter) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.n {
		return 0, errors.New("disk on fire")
	}
	return f.ReaderAt.ReadAt(p, off)
}

// countingReader records how much Probe reads and that it stays inside the file.
type countingReader struct {
	r     io.ReaderAt
	size  int64
	read  int64
	calls int
	t     *testing.T
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > c.size {
		c.t.Fatalf("ReadAt(%d bytes at %d) outside a %d-byte file", len(p), off, c.size)
	}
	c.read += int64(len(p))
	c.calls++
	return c.r.ReadAt(p, off)
}

func FuzzProbe(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data), size: int64(len(data)), t: t}
		in, err := Probe(cr, cr.size)
		if cr.read > maxProbeRead || cr.calls > 2*maxMarkers+4 {
			t.Fatalf("read %d bytes in %d calls, bound %d", cr.read, cr.calls, maxProbeRead)
		}
		if err != nil {
			if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrImageTooLarge) {
				t.Fatalf("err = %v, want ErrUnsupported or ErrImageTooLarge", err)
			}
			return
		}
		if in.Width < 1 || in.Height < 1 || in.Width > MaxSide || in.Height > MaxSide || in.Width*in.Height > MaxPixels || contentType(in.MIME) != in.MIME {
			t.Fatalf("Probe = %+v", in)
		}
		// Where the standard library also reads the header, it must agree.
		if cfg, format, err := image.DecodeConfig(bytes.NewReader(data)); err == nil && "image/"+format == in.MIME {
			if cfg.Width != in.Width || cfg.Height != in.Height {
				t.Fatalf("Probe = %+v, image.DecodeConfig = %dx%d", in, cfg.Width, cfg.Height)
			}
		}
	})
}
