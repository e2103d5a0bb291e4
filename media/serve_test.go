package media

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// stored uploads img through the HTTP layer and returns its id.
func stored(t *testing.T, srv *httptest.Server, img []byte) string {
	t.Helper()
	body, ctype := form(t, "file", "a.png", "image/png", img)
	status, got := post(t, srv, "u1", bytes.NewReader(body), ctype)
	if status != http.StatusOK {
		t.Fatalf("upload: status %d %v", status, got)
	}
	return got["id"].(string)
}

func TestServeMedia(t *testing.T) {
	s, _ := newService(t)
	srv := serve(t, s)
	img := pngOf(t, 40, 30)
	checkServe(t, srv, stored(t, srv, img), img)
}

// checkServe asks srv for the media id, stored with the bytes img at testNow,
// with every kind of GET and HEAD a browser or a cache sends.
func checkServe(t *testing.T, srv *httptest.Server, id string, img []byte) {
	lastMod := testNow.Format(http.TimeFormat)

	tests := []struct {
		name    string
		method  string
		header  map[string]string
		status  int
		body    []byte // nil: not checked, except that HEAD and 304 have none
		headers map[string]string
	}{
		{name: "GET", method: "GET", status: 200, body: img, headers: map[string]string{
			"Content-Type":            "image/png",
			"ETag":                    `"` + id + `"`,
			"Cache-Control":           "public, max-age=31536000, immutable",
			"X-Content-Type-Options":  "nosniff",
			"Content-Security-Policy": mediaCSP,
			"Last-Modified":           lastMod,
		}},
		{name: "HEAD", method: "HEAD", status: 200, headers: map[string]string{
			"Content-Type": "image/png", "Content-Length": itoa(len(img)), "ETag": `"` + id + `"`,
		}},
		{name: "Range", method: "GET", header: map[string]string{"Range": "bytes=10-19"}, status: 206, body: img[10:20],
			headers: map[string]string{"Content-Range": "bytes 10-19/" + itoa(len(img))}},
		{name: "suffix Range", method: "GET", header: map[string]string{"Range": "bytes=-12"}, status: 206, body: img[len(img)-12:]},
		{name: "Range past the end", method: "GET", header: map[string]string{"Range": "bytes=" + itoa(len(img)) + "-"}, status: 416},
		{name: "If-None-Match", method: "GET", header: map[string]string{"If-None-Match": `"` + id + `"`}, status: 304},
		{name: "If-None-Match other", method: "GET", header: map[string]string{"If-None-Match": `"abc"`}, status: 200, body: img},
		{name: "If-Modified-Since", method: "GET", header: map[string]string{"If-Modified-Since": testNow.Add(time.Hour).Format(http.TimeFormat)}, status: 304},
		{name: "If-Range stale", method: "GET", header: map[string]string{"Range": "bytes=0-3", "If-Range": `"old"`}, status: 200, body: img},
		{name: "POST", method: "POST", status: 405, headers: map[string]string{"Allow": "GET, HEAD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+"/media/"+id, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, got)
			}
			empty := tt.method == "HEAD" || tt.status == 304
			if tt.body != nil && !bytes.Equal(got, tt.body) || empty && len(got) != 0 {
				t.Errorf("body %d bytes, want %d", len(got), len(tt.body))
			}
			for k, v := range tt.headers {
				if g := resp.Header.Get(k); g != v {
					t.Errorf("%s = %q, want %q", k, g, v)
				}
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestServeMediaNotFound(t *testing.T) {
	s, meta := newService(t)
	srv := serve(t, s)
	id := stored(t, srv, pngOf(t, 4, 4))
	// metadata whose file is gone
	orphan := strings.Repeat("ab", 32)
	meta.PutMedia(persistence.Media{ID: orphan, MIME: "image/png", Size: 10})
	if err := os.WriteFile(s.Dir+"/passwd", []byte("root:x:0:0"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{
		"/media/" + strings.Repeat("0", 64), // well-formed, unknown
		"/media/" + orphan,
		"/media/" + strings.ToUpper(id),
		"/media/" + id[:63],
		"/media/" + id + "0",
		"/media/" + id + "/",
		"/media/" + id[:2] + "/" + id[2:],
		"/media/../etc/passwd",
		"/media/../passwd",
		"/media/..%2fpasswd",
		"/media/",
		"/media/tmp",
	} {
		t.Run(path, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://chat.example.com/", nil)
			req.URL.Path = path // as a client could send it, before any cleaning
			req.URL.RawPath = ""
			w := httptest.NewRecorder()
			s.ServeMedia(w, req)
			if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "ERR_NOT_FOUND") {
				t.Fatalf("status %d %s, want 404", w.Code, w.Body)
			}
		})
	}
}

// With a pattern wildcard the id comes from PathValue.
func TestServeMediaPattern(t *testing.T) {
	s, _ := newService(t)
	img := pngOf(t, 4, 4)
	id := stored(t, serve(t, s), img)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /m/{id}", s.ServeMedia)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/m/" + id)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, img) {
		t.Fatalf("status %d, %d bytes", resp.StatusCode, len(got))
	}
}
