package media

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// memMeta is a MetaStore in a map; putErr makes PutMedia fail, getErr Media, addErr
// AddUpload and usageErr Uploads.
type memMeta struct {
	mu       sync.Mutex
	m        map[string]persistence.Media
	uploads  *persistence.Memory
	putErr   error
	getErr   error
	addErr   error
	usageErr error
}

func (s *memMeta) AddUpload(uid string, at time.Time, n int64, forget time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addErr != nil {
		return s.addErr
	}
	if s.uploads == nil {
		s.uploads = persistence.NewMemory()
	}
	return s.uploads.AddUpload(uid, at, n, forget)
}

func (s *memMeta) Uploads(uid string, since time.Time) ([]persistence.Upload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usageErr != nil {
		return nil, s.usageErr
	}
	if s.uploads == nil {
		return nil, nil
	}
	return s.uploads.Uploads(uid, since)
}

// uploaded is uid's bytes on record.
func (s *memMeta) uploaded(t testing.TB, uid string) int64 {
	t.Helper()
	return uploadedBytes(t, s, uid)
}

// uploadedBytes is what meta counts against uid's quota: the bytes of its upload records.
func uploadedBytes(t testing.TB, meta MetaStore, uid string) int64 {
	t.Helper()
	recs, err := meta.Uploads(uid, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range recs {
		n += r.Bytes
	}
	return n
}

func (s *memMeta) PutMedia(m persistence.Media) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.putErr != nil {
		return s.putErr
	}
	if s.m == nil {
		s.m = map[string]persistence.Media{}
	}
	s.m[m.ID] = m
	return nil
}

func (s *memMeta) Media(id string) (persistence.Media, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.getErr != nil {
		return persistence.Media{}, s.getErr
	}
	m, ok := s.m[id]
	if !ok {
		return persistence.Media{}, persistence.ErrNotFound
	}
	return m, nil
}

func (s *memMeta) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

var testNow = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// session accepts the pair a logged-in test client sends; the uid is the X-WX-Id.
func session(r *http.Request) (string, bool) {
	if r.Header.Get("X-WX-Skey") != "skey" || r.Header.Get("X-WX-Id") == "" {
		return "", false
	}
	return r.Header.Get("X-WX-Id"), true
}

func newService(t testing.TB) (*Service, *memMeta) {
	meta := &memMeta{}
	return &Service{
		Dir:          filepath.Join(t.TempDir(), "media"),
		Meta:         meta,
		Authenticate: session,
		Now:          func() time.Time { return testNow },
	}, meta
}

// serve runs s behind a real HTTP server on the loopback interface.
func serve(t testing.TB, s *Service) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/upload", s.ServeUpload)
	mux.HandleFunc("/media/", s.ServeMedia)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// form builds a body the way wx.uploadFile does: formData fields first, then the file.
func form(t testing.TB, field, filename, ctype string, data []byte) (body []byte, contentType string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	if err := mw.WriteField("room", "lobby"); err != nil {
		t.Fatal(err)
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="`+field+`"; filename="`+filename+`"`)
	h.Set("Content-Type", ctype)
	pw, err := mw.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	pw.Write(data)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), mw.FormDataContentType()
}

// post sends body to /upload as user uid ("" for no session) and decodes the JSON answer.
func post(t testing.TB, srv *httptest.Server, uid string, body io.Reader, ctype string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/upload", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	if uid != "" {
		req.Header.Set("X-WX-Id", uid)
		req.Header.Set("X-WX-Skey", "skey")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("status %d: answer is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// storedFiles lists the regular files under dir (none if dir does not exist).
func storedFiles(t testing.TB, dir string) []string {
	t.Helper()
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil
	}
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gradient(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Set(x, y, color.NRGBA{uint8(x * 7), uint8(y * 5), uint8(x ^ y), 255})
		}
	}
	return m
}

func pngOf(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, gradient(w, h)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jpegOf(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, gradient(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gifOf(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := gif.Encode(&b, gradient(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func readFile(t testing.TB, name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
