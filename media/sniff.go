package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Info describes an image recognised by Probe.
type Info struct {
	MIME          string
	Width, Height int
}

// Probe refuses images larger than these with ErrImageTooLarge: a viewer decodes
// every pixel, whatever the file's size (a 1.5 MB PNG can declare 20000×20000).
const (
	MaxSide   = 30000      // largest width or height
	MaxPixels = 40_000_000 // largest width × height
)

// ErrImageTooLarge is returned by Probe for a well-formed image above MaxSide or MaxPixels.
var ErrImageTooLarge = errors.New("media: image too large")

const (
	headLen    = 4096 // read in one call from the start; every header we need usually fits
	tailLen    = 4096 // how far back from the end a JPEG's EOI may hide behind zero padding
	maxMarkers = 1024 // JPEG segments (and fill bytes) allowed before the frame header

	// maxProbeRead bounds the bytes Probe reads, whatever the file: head, tail and
	// at most 4 bytes per JPEG marker outside the head, plus the frame header.
	maxProbeRead = headLen + tailLen + 4*maxMarkers + 16
)

var (
	pngSig  = []byte("\x89PNG\r\n\x1a\n")
	pngIEND = []byte("\x00\x00\x00\x00IEND\xaeB`\x82")
)

// Probe recognises a JPEG, PNG, GIF or WebP by its bytes (never by name or declared type),
// checks that it is whole and reads its dimensions from the headers without decoding pixels.
// A file that is not one of these, or is structurally broken, yields an error wrapping
// ErrUnsupported; one with too many pixels ErrImageTooLarge; errors reading r are
// returned as they are.
func Probe(r io.ReaderAt, size int64) (Info, error) {
	s := &source{r: r, size: size}
	head, err := s.at(0, min(size, headLen))
	if err != nil {
		return Info{}, err
	}
	s.head = head
	switch {
	case bytes.HasPrefix(head, pngSig):
		return probePNG(s)
	case bytes.HasPrefix(head, []byte{0xff, 0xd8}):
		return probeJPEG(s)
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return probeGIF(s)
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return probeWebP(s)
	}
	return Info{}, unsupported("unknown format")
}

// source reads a file of known size, serving the first headLen bytes from memory.
type source struct {
	r    io.ReaderAt
	size int64
	head []byte
}

// at returns the n bytes at off; bytes beyond the end mean a truncated file.
func (s *source) at(off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off > s.size || n > s.size-off {
		return nil, unsupported("truncated")
	}
	if off+n <= int64(len(s.head)) {
		return s.head[off : off+n], nil
	}
	p := make([]byte, n)
	got, err := s.r.ReadAt(p, off)
	if got == len(p) {
		return p, nil
	}
	if err == io.EOF || err == nil {
		return nil, unsupported("truncated")
	}
	return nil, fmt.Errorf("media: read: %w", err)
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

func info(mime string, w, h uint32) (Info, error) {
	if w == 0 || h == 0 {
		return Info{}, unsupported("%s: dimensions %dx%d out of range", mime, w, h)
	}
	if w > MaxSide || h > MaxSide {
		return Info{}, fmt.Errorf("%w: %dx%d pixels, more than %d on a side", ErrImageTooLarge, w, h, MaxSide)
	}
	if uint64(w)*uint64(h) > MaxPixels {
		return Info{}, fmt.Errorf("%w: %dx%d is %.1f megapixels, more than %d", ErrImageTooLarge, w, h, float64(w)*float64(h)/1e6, MaxPixels/1_000_000)
	}
	return Info{MIME: mime, Width: int(w), Height: int(h)}, nil
}

func probePNG(s *source) (Info, error) {
	if s.size < 33+12 {
		return Info{}, unsupported("png: truncated")
	}
	h, err := s.at(0, 33) // signature, IHDR length and type, 13 bytes of data, CRC
	if err != nil {
		return Info{}, err
	}
	be := binary.BigEndian
	if be.Uint32(h[8:]) != 13 || string(h[12:16]) != "IHDR" {
		return Info{}, unsupported("png: IHDR is not the first chunk")
	}
	if crc32.ChecksumIEEE(h[12:29]) != be.Uint32(h[29:]) {
		return Info{}, unsupported("png: IHDR checksum mismatch")
	}
	depth, color := h[24], h[25]
	if !pngDepthOK(color, depth) || h[26] != 0 || h[27] != 0 || h[28] > 1 {
		return Info{}, unsupported("png: invalid IHDR")
	}
	tail, err := s.at(s.size-12, 12)
	if err != nil {
		return Info{}, err
	}
	if !bytes.Equal(tail, pngIEND) {
		return Info{}, unsupported("png: does not end with IEND")
	}
	return info("image/png", be.Uint32(h[16:]), be.Uint32(h[20:]))
}

func pngDepthOK(color, depth byte) bool {
	switch color {
	case 0: // grey
		return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16
	case 3: // palette
		return depth == 1 || depth == 2 || depth == 4 || depth == 8
	case 2, 4, 6: // RGB, grey+alpha, RGBA
		return depth == 8 || depth == 16
	}
	return false
}

func probeGIF(s *source) (Info, error) {
	h, err := s.at(0, 13) // header and logical screen descriptor
	if err != nil {
		return Info{}, err
	}
	if s.size < 14 {
		return Info{}, unsupported("gif: truncated")
	}
	t, err := s.at(s.size-1, 1)
	if err != nil {
		return Info{}, err
	}
	if t[0] != 0x3b {
		return Info{}, unsupported("gif: no trailer")
	}
	le := binary.LittleEndian
	return info("image/gif", uint32(le.Uint16(h[6:])), uint32(le.Uint16(h[8:])))
}

// isSOF reports whether m is a frame header; C4, C8 and CC share the range but are not.
func isSOF(m byte) bool { return m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc }

func probeJPEG(s *source) (Info, error) {
	be := binary.BigEndian
	pos := int64(2)
	var w, h uint32
	for i := 0; ; i++ {
		if i == maxMarkers {
			return Info{}, unsupported("jpeg: no frame header in the first %d markers", maxMarkers)
		}
		b, err := s.at(pos, 2)
		if err != nil {
			return Info{}, err
		}
		if b[0] != 0xff {
			return Info{}, unsupported("jpeg: no marker at offset %d", pos)
		}
		switch m := b[1]; {
		case m == 0xff: // fill byte before a marker
			pos++
			continue
		case m == 0x01 || m >= 0xd0 && m <= 0xd7: // TEM, RSTn: no length
			pos += 2
			continue
		case m == 0x00 || m == 0xd8 || m == 0xd9 || m == 0xda:
			return Info{}, unsupported("jpeg: marker %#02x before the frame header", m)
		}
		l, err := s.at(pos+2, 2)
		if err != nil {
			return Info{}, err
		}
		n := int64(be.Uint16(l))
		if n < 2 || pos+2+n > s.size {
			return Info{}, unsupported("jpeg: bad segment length at offset %d", pos)
		}
		if isSOF(b[1]) {
			if n < 8 {
				return Info{}, unsupported("jpeg: short frame header")
			}
			f, err := s.at(pos+4, 5) // precision, height, width
			if err != nil {
				return Info{}, err
			}
			h, w = uint32(be.Uint16(f[1:])), uint32(be.Uint16(f[3:]))
			pos += 2 + n
			break
		}
		pos += 2 + n
	}
	// EOI must follow the frame header, possibly padded with zeros.
	n := min(s.size-pos, tailLen)
	t, err := s.at(s.size-n, n)
	if err != nil {
		return Info{}, err
	}
	t = bytes.TrimRight(t, "\x00")
	if !bytes.HasSuffix(t, []byte{0xff, 0xd9}) {
		return Info{}, unsupported("jpeg: does not end with EOI")
	}
	return info("image/jpeg", w, h)
}

func probeWebP(s *source) (Info, error) {
	h, err := s.at(0, 20) // RIFF header, first chunk header
	if err != nil {
		return Info{}, err
	}
	le := binary.LittleEndian
	if riff := int64(le.Uint32(h[4:])); riff+8 != s.size {
		return Info{}, unsupported("webp: RIFF size %d does not match file size %d", riff, s.size)
	}
	fourcc, n := string(h[12:16]), int64(le.Uint32(h[16:]))
	if 20+n > s.size {
		return Info{}, unsupported("webp: %q chunk overruns the file", fourcc)
	}
	var w, ht uint32
	switch fourcc {
	case "VP8 ":
		if n < 10 {
			return Info{}, unsupported("webp: short VP8 chunk")
		}
		d, err := s.at(20, 10) // frame tag, start code, width, height
		if err != nil {
			return Info{}, err
		}
		if d[0]&1 != 0 || !bytes.Equal(d[3:6], []byte{0x9d, 0x01, 0x2a}) {
			return Info{}, unsupported("webp: VP8 chunk is not a key frame")
		}
		w, ht = uint32(le.Uint16(d[6:])&0x3fff), uint32(le.Uint16(d[8:])&0x3fff)
	case "VP8L":
		if n < 5 {
			return Info{}, unsupported("webp: short VP8L chunk")
		}
		d, err := s.at(20, 5) // signature, 14 bits width-1, 14 bits height-1, alpha, version
		if err != nil {
			return Info{}, err
		}
		bits := le.Uint32(d[1:])
		if d[0] != 0x2f || bits>>29 != 0 {
			return Info{}, unsupported("webp: bad VP8L header")
		}
		w, ht = bits&0x3fff+1, bits>>14&0x3fff+1
	case "VP8X":
		if n < 10 {
			return Info{}, unsupported("webp: short VP8X chunk")
		}
		d, err := s.at(20, 10) // flags, reserved, 24 bits canvas width-1, 24 bits height-1
		if err != nil {
			return Info{}, err
		}
		if 20+n+(n&1) >= s.size { // chunks are padded to even length
			return Info{}, unsupported("webp: VP8X without image data")
		}
		w = (uint32(d[4]) | uint32(d[5])<<8 | uint32(d[6])<<16) + 1
		ht = (uint32(d[7]) | uint32(d[8])<<8 | uint32(d[9])<<16) + 1
	default:
		return Info{}, unsupported("webp: first chunk %q is not VP8, VP8L or VP8X", fourcc)
	}
	return info("image/webp", w, ht)
}
