package media

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// noisePNG is a w×h picture of random pixels stored uncompressed: about 4·w·h bytes,
// different on every call.
func noisePNG(t testing.TB, w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(rand.Uint32())
	}
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// clock is a time tests move by hand.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(testNow.Truncate(time.Hour).UnixNano()) // on a bucket boundary of every window used here
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// upload posts data as uid and returns the status, the JSON answer and the headers.
func upload(t testing.TB, url, uid string, data []byte) (int, map[string]any, http.Header) {
	t.Helper()
	body, ctype := form(t, "file", "a.png", "image/png", data)
	req, _ := http.NewRequest(http.MethodPost, url+"/upload", bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("X-WX-Id", uid)
	req.Header.Set("X-WX-Skey", "skey")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("status %d: answer is not JSON: %s", resp.StatusCode, b)
	}
	return resp.StatusCode, got, resp.Header
}

// countWrites counts the temp-file writes of s: zero means nothing of the body reached the disk.
func countWrites(s *Service) *atomic.Int64 {
	var n atomic.Int64
	s.wrapTmp = func(w io.Writer) io.Writer {
		return writerFunc(func(p []byte) (int, error) { n.Add(1); return w.Write(p) })
	}
	return &n
}

func (s *memMeta) setPutErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putErr = err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestUploadQuota(t *testing.T) {
	s, meta := newService(t)
	clk := newClock()
	s.Now = clk.now
	// Each is larger than the form's framing allowance, so the fourth can be refused
	// from its Content-Length alone.
	imgs := [][]byte{noisePNG(t, 200, 200), noisePNG(t, 200, 200), noisePNG(t, 200, 200), noisePNG(t, 200, 200)}
	size := int64(len(imgs[0])) // all four are the same size
	s.Quota = Quota{Bytes: 3*size + size/2, Per: time.Hour}
	writes := countWrites(s)
	srv := serve(t, s)

	for i, img := range imgs[:3] {
		if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusOK {
			t.Fatalf("upload %d: %d %v", i, status, got)
		}
		clk.advance(10 * time.Minute)
	}
	if got := meta.uploaded(t, "u1"); got != 3*size {
		t.Fatalf("recorded %d bytes, want %d", got, 3*size)
	}
	// The fourth would pass the quota: refused before a byte is written, nothing kept.
	before := writes.Load()
	status, got, hdr := upload(t, srv.URL, "u1", imgs[3])
	if status != http.StatusTooManyRequests || got["error"] != "ERR_QUOTA" {
		t.Fatalf("over quota: %d %v, want 429 ERR_QUOTA", status, got)
	}
	msg, _ := got["message"].(string)
	for _, want := range []string{"upload quota of " + humanSize(s.Quota.Bytes) + " per 1h reached", humanSize(3*size) + " used", "this upload needs at least", "try again in 30m1s"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	// The first upload leaves the window 30 min from now: then there is room again.
	if ra := hdr.Get("Retry-After"); ra != "1801" {
		t.Errorf("Retry-After %q, want 1801", ra)
	}
	if writes.Load() != before {
		t.Errorf("a refused upload wrote %d times to disk", writes.Load()-before)
	}
	if f := storedFiles(t, s.Dir); len(f) != 3 || meta.len() != 3 || meta.uploaded(t, "u1") != 3*size {
		t.Fatalf("after refusal: files %v, %d records, %d bytes recorded", f, meta.len(), meta.uploaded(t, "u1"))
	}
	// Identical bytes count too: an image already stored is refused like a new one.
	if status, got, _ := upload(t, srv.URL, "u1", imgs[0]); status != http.StatusTooManyRequests {
		t.Fatalf("same bytes again over quota: %d %v, want 429", status, got)
	}
	// Other users have their own quota.
	if status, got, _ := upload(t, srv.URL, "u2", imgs[3]); status != http.StatusOK {
		t.Fatalf("another user: %d %v", status, got)
	}
	// The window rolls: once the first upload is older than an hour there is room for one more.
	clk.advance(30*time.Minute - time.Second)
	if status, _, _ := upload(t, srv.URL, "u1", imgs[3]); status != http.StatusTooManyRequests {
		t.Fatalf("a second too early: %d, want 429", status)
	}
	clk.advance(time.Second + bucket(s.Quota))
	if status, got, _ := upload(t, srv.URL, "u1", imgs[3]); status != http.StatusOK {
		t.Fatalf("after the window: %d %v", status, got)
	}
	// Old records are forgotten as new ones come.
	recs, _ := meta.Uploads("u1", time.Time{})
	if len(recs) != 3 || meta.uploaded(t, "u1") != 3*size {
		t.Errorf("records %v, want the three of the last hour", recs)
	}
	// Re-uploading one's own image that is stored already counts again, in full.
	clk.advance(time.Hour + bucket(s.Quota))
	for range 2 {
		if status, got, _ := upload(t, srv.URL, "u1", imgs[0]); status != http.StatusOK {
			t.Fatalf("same bytes: %d %v", status, got)
		}
	}
	if got := meta.uploaded(t, "u1"); got != 2*size {
		t.Errorf("recorded %d bytes, want %d (the same image twice; older records forgotten)", got, 2*size)
	}
	if n := len(storedFiles(t, s.Dir)); n != 4 {
		t.Errorf("%d files stored, want 4", n)
	}
}

// A file larger than the whole quota can never fit: no retry time is promised.
func TestUploadLargerThanQuota(t *testing.T) {
	s, meta := newService(t)
	s.Quota = Quota{Bytes: 1000, Per: time.Hour}
	srv := serve(t, s)
	img := noisePNG(t, 32, 32)
	status, got, hdr := upload(t, srv.URL, "u1", img)
	msg, _ := got["message"].(string)
	if status != http.StatusTooManyRequests || got["error"] != "ERR_QUOTA" || !strings.Contains(msg, "("+humanSize(int64(len(img)))+") is larger than the whole quota of 1000B per 1h") {
		t.Fatalf("%d %v, want 429 saying the file is larger than the quota", status, got)
	}
	if ra := hdr.Get("Retry-After"); ra != "" {
		t.Errorf("Retry-After %q for a file that never fits", ra)
	}
	if f := storedFiles(t, s.Dir); len(f) != 0 || meta.len() != 0 || meta.uploaded(t, "u1") != 0 {
		t.Fatalf("left behind: files %v, %d metadata", f, meta.len())
	}
}

// A body of unknown length is checked once its size is known.
func TestUploadQuotaChunked(t *testing.T) {
	s, meta := newService(t)
	img := noisePNG(t, 40, 40)
	s.Quota = Quota{Bytes: int64(len(img)) * 3 / 2, Per: time.Hour}
	srv := serve(t, s)
	send := func() (int, map[string]any) {
		body, ctype := form(t, "file", "a.png", "image/png", img)
		return post(t, srv, "u1", hideLen{bytes.NewReader(body)}, ctype)
	}
	if status, got := send(); status != http.StatusOK {
		t.Fatalf("first: %d %v", status, got)
	}
	status, got := send()
	if status != http.StatusTooManyRequests || !strings.Contains(got["message"].(string), "this file is "+humanSize(int64(len(img)))) {
		t.Fatalf("second: %d %v, want 429 naming the file's size", status, got)
	}
	if meta.uploaded(t, "u1") != int64(len(img)) || len(storedFiles(t, s.Dir)) != 1 {
		t.Fatalf("recorded %d, files %v", meta.uploaded(t, "u1"), storedFiles(t, s.Dir))
	}
}

// A burst of concurrent uploads by one user stores no more than the quota, and
// every upload that does not fit is refused with ERR_QUOTA.
func TestUploadQuotaBurst(t *testing.T) {
	s, meta := newService(t)
	const n = 12
	imgs := make([][]byte, n)
	for i := range imgs {
		imgs[i] = noisePNG(t, 200, 200)
	}
	size := int64(len(imgs[0]))
	quota := 4*size + size/2
	s.Quota = Quota{Bytes: quota, Per: time.Hour}
	srv := serve(t, s)
	var (
		wg       sync.WaitGroup
		accepted atomic.Int64
		start    = make(chan struct{})
	)
	for _, img := range imgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status, got, _ := upload(t, srv.URL, "u1", img)
			switch {
			case status == http.StatusOK:
				accepted.Add(size)
			case status != http.StatusTooManyRequests || got["error"] != "ERR_QUOTA":
				t.Errorf("%d %v, want 200 or 429 ERR_QUOTA", status, got)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := accepted.Load(); got > quota || got == 0 {
		t.Fatalf("accepted %d bytes of a %d quota", got, quota)
	}
	if got := meta.uploaded(t, "u1"); got != accepted.Load() {
		t.Errorf("recorded %d bytes, accepted %d", got, accepted.Load())
	}
	if files := storedFiles(t, s.Dir); int64(len(files))*size != accepted.Load() {
		t.Errorf("%d files stored for %d accepted bytes", len(files), accepted.Load())
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if len(s.held) != 0 || s.heldAll != 0 {
		t.Errorf("reservations left: %v, %d bytes", s.held, s.heldAll)
	}
}

// Every refusal after the reservation gives it back: a user refused for other
// reasons keeps the whole quota.
func TestUploadRefusalReleasesQuota(t *testing.T) {
	s, meta := newService(t)
	img := noisePNG(t, 48, 48)
	s.Quota = Quota{Bytes: int64(len(img)) + 100, Per: time.Hour}
	srv := serve(t, s)
	bad := [][]byte{[]byte("not an image"), pngWithIHDR(t, 20000, 20000), img[:len(img)-1]}
	for _, b := range bad {
		if status, got, _ := upload(t, srv.URL, "u1", b); status == http.StatusOK || status == http.StatusTooManyRequests {
			t.Fatalf("bad upload: %d %v", status, got)
		}
	}
	meta.setPutErr(errors.New("store closed"))
	if status, _, _ := upload(t, srv.URL, "u1", img); status != http.StatusInternalServerError {
		t.Fatalf("metadata failure: %d, want 500", status)
	}
	meta.setPutErr(nil)
	if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusOK {
		t.Fatalf("after refusals: %d %v, want the whole quota left", status, got)
	}
	if got := meta.uploaded(t, "u1"); got != int64(len(img)) {
		t.Errorf("recorded %d bytes, want %d", got, len(img))
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if len(s.held) != 0 || s.heldAll != 0 {
		t.Errorf("reservations left: %v, %d bytes", s.held, s.heldAll)
	}
}

func TestUploadQuotaOff(t *testing.T) {
	s, meta := newService(t)
	s.Quota = Quota{Off: true, Bytes: 10, Per: time.Hour}
	srv := serve(t, s)
	for range 3 {
		if status, got, _ := upload(t, srv.URL, "u1", noisePNG(t, 16, 16)); status != http.StatusOK {
			t.Fatalf("%d %v", status, got)
		}
	}
	if recs, _ := meta.Uploads("u1", time.Time{}); len(recs) != 0 {
		t.Errorf("quota off still records %v", recs)
	}
}

func TestUploadQuotaStoreFailures(t *testing.T) {
	img := noisePNG(t, 16, 16)
	t.Run("usage unreadable", func(t *testing.T) {
		s, meta := newService(t)
		meta.usageErr = errors.New("store closed")
		srv := serve(t, s)
		if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusInternalServerError || got["error"] != "ERR_STORAGE" {
			t.Fatalf("%d %v, want 500 ERR_STORAGE", status, got)
		}
		if f := storedFiles(t, s.Dir); len(f) != 0 || meta.len() != 0 {
			t.Fatalf("left behind: %v", f)
		}
	})
	t.Run("record fails", func(t *testing.T) {
		// The file is stored and answered; the failure is logged and the user not charged.
		s, meta := newService(t)
		meta.addErr = errors.New("store closed")
		srv := serve(t, s)
		if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusOK {
			t.Fatalf("%d %v, want 200", status, got)
		}
		if len(storedFiles(t, s.Dir)) != 1 || meta.len() != 1 {
			t.Fatal("file or metadata missing")
		}
		s.qmu.Lock()
		defer s.qmu.Unlock()
		if s.heldAll != 0 {
			t.Errorf("%d bytes still held", s.heldAll)
		}
	})
}

// Usage lives in the store, so a restart does not hand out a fresh quota.
func TestUploadQuotaSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	img := noisePNG(t, 64, 64)
	quota := Quota{Bytes: int64(len(img)) * 3 / 2, Per: 24 * time.Hour}
	start := func() (*Service, *persistence.Badger, string) {
		store, err := persistence.OpenBadger(filepath.Join(dir, "store"), persistence.Options{})
		if err != nil {
			t.Fatal(err)
		}
		s := &Service{Dir: filepath.Join(dir, "media"), Meta: store, Authenticate: session, Now: clk.now, Quota: quota}
		return s, store, serve(t, s).URL
	}
	_, store, url := start()
	if status, got, _ := upload(t, url, "u1", img); status != http.StatusOK {
		t.Fatalf("%d %v", status, got)
	}
	if status, _, _ := upload(t, url, "u1", noisePNG(t, 64, 64)); status != http.StatusTooManyRequests {
		t.Fatalf("second upload: %d, want 429", status)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	clk.advance(time.Hour)
	_, store, url = start()
	defer store.Close()
	status, got, hdr := upload(t, url, "u1", noisePNG(t, 64, 64))
	if status != http.StatusTooManyRequests || got["error"] != "ERR_QUOTA" {
		t.Fatalf("after restart: %d %v, want 429 ERR_QUOTA", status, got)
	}
	if ra, _ := strconv.Atoi(hdr.Get("Retry-After")); ra != 23*3600+1 {
		t.Errorf("Retry-After %q, want 23 h", hdr.Get("Retry-After"))
	}
	clk.advance(23*time.Hour + bucket(quota))
	if status, got, _ := upload(t, url, "u1", noisePNG(t, 64, 64)); status != http.StatusOK {
		t.Fatalf("a day later: %d %v", status, got)
	}
}

// The disk check uses the real free space of the media directory's file system.
func TestUploadMinFreeDisk(t *testing.T) {
	img := noisePNG(t, 16, 16)
	free := func(t *testing.T, dir string) int64 {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		n, err := DiskFree(dir)
		if err != nil {
			t.Fatalf("DiskFree: %v", err)
		}
		if n <= 0 {
			t.Fatalf("DiskFree = %d", n)
		}
		return n
	}
	t.Run("short of space", func(t *testing.T) {
		s, meta := newService(t)
		s.MinFreeDisk = free(t, s.Dir) + 1<<30
		writes := countWrites(s)
		srv := serve(t, s)
		status, got, _ := upload(t, srv.URL, "u1", img)
		if status != http.StatusInsufficientStorage || got["error"] != "ERR_STORAGE_FULL" || !strings.Contains(got["message"].(string), "uploads are paused") {
			t.Fatalf("%d %v, want 507 ERR_STORAGE_FULL", status, got)
		}
		if writes.Load() != 0 || len(storedFiles(t, s.Dir)) != 0 || meta.len() != 0 || meta.uploaded(t, "u1") != 0 {
			t.Fatalf("something was written: %d writes, files %v", writes.Load(), storedFiles(t, s.Dir))
		}
	})
	t.Run("enough space", func(t *testing.T) {
		s, _ := newService(t)
		s.MinFreeDisk = 1 << 20
		srv := serve(t, s)
		if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusOK {
			t.Fatalf("%d %v", status, got)
		}
	})
	t.Run("no minimum", func(t *testing.T) {
		s, _ := newService(t)
		s.MinFreeDisk = -1
		srv := serve(t, s)
		if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusOK {
			t.Fatalf("%d %v", status, got)
		}
	})
	// The file must fit above the minimum too. A body of unknown length may be as
	// large as the upload limit; one that says its length is held at that.
	t.Run("size counts", func(t *testing.T) {
		s, _ := newService(t)
		s.MaxBytes = 1 << 30
		s.MinFreeDisk = free(t, s.Dir) - 1<<29 // half the limit below what is free
		srv := serve(t, s)
		body, ctype := form(t, "file", "a.png", "image/png", img)
		if status, got := post(t, srv, "u1", hideLen{bytes.NewReader(body)}, ctype); status != http.StatusInsufficientStorage {
			t.Fatalf("unknown length: %d %v, want 507", status, got)
		}
		if status, got := post(t, srv, "u1", bytes.NewReader(body), ctype); status != http.StatusOK {
			t.Fatalf("known small length: %d %v, want 200", status, got)
		}
	})
	// Uploads in flight count against the free space too.
	t.Run("held bytes count", func(t *testing.T) {
		s, _ := newService(t)
		if err := s.Open(); err != nil {
			t.Fatal(err)
		}
		s.MinFreeDisk = 1 << 20
		f := free(t, s.Dir)
		h, err := s.admit("u1", f-1<<29, 1) // as if a huge upload were under way
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.admit("u2", 1<<30, 1); !errors.As(err, new(*lowDiskError)) {
			t.Fatalf("second admit: %v, want lowDiskError", err)
		}
		s.release(h)
		h, err = s.admit("u2", 1<<20, 1)
		if err != nil {
			t.Fatalf("after release: %v", err)
		}
		s.release(h)
	})
}

func TestUploadBombs(t *testing.T) {
	s, meta := newService(t)
	srv := serve(t, s)
	for _, format := range []string{"png", "gif", "jpeg", "webp", "webp lossy"} {
		w, h := 20000, 20000
		if format == "webp lossy" {
			w, h = 16383, 16383
		}
		data := declaring(t, format, w, h)
		status, got, _ := upload(t, srv.URL, "u1", data)
		msg, _ := got["message"].(string)
		if status != http.StatusRequestEntityTooLarge || got["error"] != "ERR_TOO_LARGE" || !strings.Contains(msg, "megapixels, more than 40") || strings.HasPrefix(msg, "media:") {
			t.Errorf("%s declaring %dx%d (%d bytes): %d %v, want 413 about megapixels", format, w, h, len(data), status, got)
		}
	}
	status, got, _ := upload(t, srv.URL, "u1", pngWithIHDR(t, 30001, 1))
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(got["message"].(string), "more than 30000 on a side") {
		t.Errorf("30001 wide: %d %v, want 413", status, got)
	}
	if f := storedFiles(t, s.Dir); len(f) != 0 || meta.len() != 0 || meta.uploaded(t, "u1") != 0 {
		t.Fatalf("left behind: files %v", f)
	}
	// Just under the cap is fine.
	if status, got, _ := upload(t, srv.URL, "u1", pngWithIHDR(t, 8000, 5000)); status != http.StatusOK {
		t.Fatalf("40 megapixels: %d %v", status, got)
	}
}
