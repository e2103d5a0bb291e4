package media

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

func TestUploadRoundTrip(t *testing.T) {
	s, meta := newService(t)
	srv := serve(t, s)
	tests := []struct {
		name, filename, mime string
		data                 []byte
		w, h                 int
	}{
		{"png", "tmp_a1.png", "image/png", pngOf(t, 64, 48), 64, 48},
		{"jpeg", "tmp_b2.jpg", "image/jpeg", jpegOf(t, 33, 17), 33, 17},
		{"gif", "tmp_c3.gif", "image/gif", gifOf(t, 20, 10), 20, 10},
		{"webp", "tmp_d4.webp", "image/webp", webpLossless(300, 200, color.NRGBA{G: 200, A: 255}, true), 300, 200},
		{"webp fixture", "x.webp", "image/webp", readFile(t, "testdata/lossless-3x2.webp"), 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// wx.uploadFile declares whatever it likes; only the bytes count.
			body, ctype := form(t, "file", tt.filename, "application/octet-stream", tt.data)
			status, got := post(t, srv, "u1", bytes.NewReader(body), ctype)
			if status != http.StatusOK {
				t.Fatalf("status %d: %v", status, got)
			}
			sum := sha256.Sum256(tt.data)
			id := hex.EncodeToString(sum[:])
			want := map[string]any{
				"url": srv.URL + "/media/" + id, "id": id, "mime": tt.mime,
				"size": float64(len(tt.data)), "width": float64(tt.w), "height": float64(tt.h),
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			m, err := meta.Media(id)
			if err != nil || m.Owner != "u1" || m.MIME != tt.mime || m.Size != int64(len(tt.data)) ||
				m.Width != tt.w || m.Height != tt.h || !m.Created.Equal(testNow) {
				t.Errorf("metadata = %+v, %v", m, err)
			}

			resp, err := srv.Client().Get(srv.URL + "/media/" + id)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			back, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(back, tt.data) {
				t.Fatalf("GET: status %d, %d bytes back, want %d identical", resp.StatusCode, len(back), len(tt.data))
			}
			if ct := resp.Header.Get("Content-Type"); ct != tt.mime {
				t.Errorf("Content-Type %q, want %q", ct, tt.mime)
			}
		})
	}
	if n := len(storedFiles(t, filepath.Join(s.Dir, "tmp"))); n != 0 {
		t.Errorf("%d files left in tmp", n)
	}
}

func TestUploadSameBytesTwice(t *testing.T) {
	s, meta := newService(t)
	var told atomic.Int64 // bytes reported, summed
	s.OnUpload = func(size int64) { told.Add(size) }
	srv := serve(t, s)
	img := pngOf(t, 10, 10)
	var ids []any
	for _, uid := range []string{"first", "second"} {
		body, ctype := form(t, "file", uid+".png", "image/png", img)
		status, got := post(t, srv, uid, bytes.NewReader(body), ctype)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d: %v", uid, status, got)
		}
		ids = append(ids, got["id"])
	}
	if ids[0] != ids[1] {
		t.Fatalf("ids differ: %v", ids)
	}
	if f := storedFiles(t, s.Dir); len(f) != 1 {
		t.Fatalf("files on disk: %v, want one", f)
	}
	if m, _ := meta.Media(ids[0].(string)); m.Owner != "first" || meta.len() != 1 {
		t.Fatalf("metadata %+v (%d entries), want the first uploader's", m, meta.len())
	}
	if told.Load() != 2*int64(len(img)) {
		t.Fatalf("OnUpload told %d bytes, want two uploads of %d", told.Load(), len(img))
	}
}

// hideLen makes the client send a chunked body, so only the server-side cut can stop it.
type hideLen struct{ io.Reader }

func TestUploadRefused(t *testing.T) {
	png := pngOf(t, 8, 8)
	big := append(bytes.Clone(png[:33]), make([]byte, 11<<20)...)
	multi := func(field, name, ctype string, data []byte) func(t *testing.T) (io.Reader, string) {
		return func(t *testing.T) (io.Reader, string) {
			b, ct := form(t, field, name, ctype, data)
			return bytes.NewReader(b), ct
		}
	}
	tests := []struct {
		name   string
		method string
		uid    string
		body   func(t *testing.T) (io.Reader, string)
		status int
		code   string
	}{
		{"no session", "", "", multi("file", "a.png", "image/png", png), 401, "ERR_INVALID_SESSION"},
		{"GET", http.MethodGet, "u1", multi("file", "a.png", "image/png", png), 405, "ERR_METHOD_NOT_ALLOWED"},
		{"text named .png", "", "u1", multi("file", "a.png", "image/png", []byte("just text\n")), 415, "ERR_UNSUPPORTED_MEDIA"},
		{"html declared image/png", "", "u1", multi("file", "a.png", "image/png", []byte("<html><script>alert(1)</script></html>")), 415, "ERR_UNSUPPORTED_MEDIA"},
		{"truncated png", "", "u1", multi("file", "a.png", "image/png", png[:len(png)/2]), 415, "ERR_UNSUPPORTED_MEDIA"},
		{"empty file", "", "u1", multi("file", "a.png", "image/png", nil), 415, "ERR_UNSUPPORTED_MEDIA"},
		{"11 MiB", "", "u1", multi("file", "a.png", "image/png", big), 413, "ERR_TOO_LARGE"},
		{"11 MiB chunked", "", "u1", func(t *testing.T) (io.Reader, string) {
			b, ct := form(t, "file", "a.png", "image/png", big)
			return hideLen{bytes.NewReader(b)}, ct
		}, 413, "ERR_TOO_LARGE"},
		{"no file field", "", "u1", multi("photo", "a.png", "image/png", png), 400, "ERR_BAD_REQUEST"},
		{"not multipart", "", "u1", func(*testing.T) (io.Reader, string) {
			return strings.NewReader(`{"file":"x"}`), "application/json"
		}, 400, "ERR_BAD_REQUEST"},
		{"broken multipart", "", "u1", func(*testing.T) (io.Reader, string) {
			return strings.NewReader("--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n\x89PNG"), "multipart/form-data; boundary=xyz"
		}, 400, "ERR_BAD_REQUEST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, meta := newService(t)
			srv := serve(t, s)
			body, ctype := tt.body(t)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, srv.URL+"/upload", body)
			req.Header.Set("Content-Type", ctype)
			if tt.uid != "" {
				req.Header.Set("X-WX-Id", tt.uid)
				req.Header.Set("X-WX-Skey", "skey")
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !bytes.Contains(got, []byte(`"error":"`+tt.code+`"`)) {
				t.Fatalf("status %d %s, want %d %s", resp.StatusCode, got, tt.status, tt.code)
			}
			if tt.code == "ERR_INVALID_SESSION" && !bytes.Contains(got, []byte(`"`+waferMagic+`":1`)) {
				t.Errorf("session error without the wafer key: %s", got)
			}
			if f := storedFiles(t, s.Dir); len(f) != 0 || meta.len() != 0 {
				t.Fatalf("left behind: files %v, %d metadata entries", f, meta.len())
			}
		})
	}
}

// devFull sends every temp-file write to /dev/full, where the kernel answers ENOSPC.
func devFull(t *testing.T) func(io.Writer) io.Writer {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		if os.Getenv("CI") == "true" { // every Linux has it: a CI machine must not skip this
			t.Fatal("no /dev/full:", err)
		}
		t.Skip("no /dev/full:", err)
	}
	t.Cleanup(func() { f.Close() })
	return func(io.Writer) io.Writer { return f }
}

func TestUploadStorageFailures(t *testing.T) {
	img := pngOf(t, 8, 8)
	tests := []struct {
		name   string
		setup  func(t *testing.T, s *Service, meta *memMeta)
		status int
		code   string
	}{
		{"disk full", func(t *testing.T, s *Service, _ *memMeta) { s.wrapTmp = devFull(t) }, 507, "ERR_STORAGE_FULL"},
		{"directory under a file", func(t *testing.T, s *Service, _ *memMeta) {
			parent := filepath.Join(t.TempDir(), "file")
			os.WriteFile(parent, nil, 0o600)
			s.Dir = filepath.Join(parent, "media")
		}, 500, "ERR_STORAGE"},
		// No temp file can be created, for root too: a file stands where the
		// opened service's temp directory was (a read-only directory is no
		// obstacle to root, and CI runs as root).
		{"temp directory gone", func(t *testing.T, s *Service, _ *memMeta) {
			if err := s.Open(); err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(s.Dir, "tmp")
			if err := os.Remove(tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(tmp, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, 500, "ERR_STORAGE"},
		{"metadata write fails", func(t *testing.T, _ *Service, meta *memMeta) { meta.putErr = errors.New("store closed") }, 500, "ERR_STORAGE"},
		{"metadata read fails", func(t *testing.T, _ *Service, meta *memMeta) { meta.getErr = errors.New("store closed") }, 500, "ERR_STORAGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, meta := newService(t)
			tt.setup(t, s, meta)
			srv := serve(t, s)
			body, ctype := form(t, "file", "a.png", "image/png", img)
			status, got := post(t, srv, "u1", bytes.NewReader(body), ctype)
			if status != tt.status || got["error"] != tt.code {
				t.Fatalf("status %d %v, want %d %s", status, got, tt.status, tt.code)
			}
			if strings.Contains(got["message"].(string), s.Dir) {
				t.Errorf("message leaks the path: %v", got["message"])
			}
			f := slices.DeleteFunc(storedFiles(t, s.Dir), func(p string) bool { return p == filepath.Join(s.Dir, "tmp") })
			if len(f) != 0 || meta.len() != 0 {
				t.Fatalf("left behind: files %v, %d metadata entries", f, meta.len())
			}
		})
	}
}

func TestOpenCleansTmp(t *testing.T) {
	s, _ := newService(t)
	tmp := filepath.Join(s.Dir, "tmp")
	if err := os.MkdirAll(filepath.Join(tmp, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tmp, "upload-123"), []byte("half an upload"), 0o600)
	os.WriteFile(filepath.Join(tmp, "sub", "x"), nil, 0o600)
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("tmp still holds %v", ents)
	}
	if err := (&Service{}).Open(); err == nil {
		t.Fatal("Open without Dir succeeded")
	}
}

func benchUpload(b *testing.B, size int) {
	s, _ := newService(b)
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.NoCompression} // stored, so the file is about size bytes
	if err := enc.Encode(&buf, gradient(512, size/(512*4))); err != nil {
		b.Fatal(err)
	}
	img := buf.Bytes()
	body, ctype := form(b, "file", "big.png", "image/png", img)
	b.ReportAllocs()
	b.SetBytes(int64(len(img)))
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/upload", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("X-WX-Id", "u1")
		req.Header.Set("X-WX-Skey", "skey")
		w := httptest.NewRecorder()
		s.ServeUpload(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// Memory per upload must not depend on the file's size: compare B/op of the two.
func BenchmarkUpload1MiB(b *testing.B) { benchUpload(b, 1<<20) }
func BenchmarkUpload5MiB(b *testing.B) { benchUpload(b, 5<<20) }

// Concurrent uploads of the same bytes all succeed and store one file and one record.
func TestUploadConcurrentSameBytes(t *testing.T) {
	s, meta := newService(t)
	srv := serve(t, s)
	body, ctype := form(t, "file", "a.gif", "image/gif", gifOf(t, 30, 30))
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/upload", bytes.NewReader(body))
			req.Header.Set("Content-Type", ctype)
			req.Header.Set("X-WX-Id", "u"+strconv.Itoa(i))
			req.Header.Set("X-WX-Skey", "skey")
			resp, err := srv.Client().Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if f := storedFiles(t, s.Dir); len(f) != 1 || meta.len() != 1 {
		t.Fatalf("files %v, %d records; want one of each", f, meta.len())
	}
}

// Bytes lost from disk come back with the next upload of the same content; metadata stays.
func TestUploadRestoresMissingFile(t *testing.T) {
	s, meta := newService(t)
	srv := serve(t, s)
	img := jpegOf(t, 16, 16)
	id := stored(t, srv, img)
	if err := os.Remove(s.files().path(id)); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Get(srv.URL + "/media/" + id)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET without file: %s, want 404", resp.Status)
	}
	body, ctype := form(t, "file", "again.jpg", "image/jpeg", img)
	if status, got := post(t, srv, "other", bytes.NewReader(body), ctype); status != http.StatusOK {
		t.Fatalf("status %d %v", status, got)
	}
	if got := readFile(t, s.files().path(id)); !bytes.Equal(got, img) {
		t.Fatal("file not restored")
	}
	if m, _ := meta.Media(id); m.Owner != "u1" {
		t.Fatalf("owner %q, want the first uploader", m.Owner)
	}
}
