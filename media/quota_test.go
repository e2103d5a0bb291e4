package media

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
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

// captureLog sends the default logger's output to a buffer until the test ends.
func captureLog(t *testing.T) *syncBuffer {
	b := &syncBuffer{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(b, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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

	logs := captureLog(t)
	for i, img := range imgs[:3] {
		if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusOK {
			t.Fatalf("upload %d: %d %v", i, status, got)
		}
		clk.advance(10 * time.Minute)
	}
	if logs.String() != "" {
		t.Errorf("accepted uploads logged %q", logs.String())
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

// With shared media bytes an upload is counted in the store before its bytes go in;
// refused after that (the object store full, the metadata failing) it is taken out
// again, so the user keeps the whole quota and the log raises no alarm. When the
// store cannot take it out, the log says whose bytes stay counted.
func TestClusterRefusalReleasesQuota(t *testing.T) {
	s := clusterServices(t, 1)[0]
	img := noisePNG(t, 48, 48)
	size := int64(len(img))
	s.Quota = Quota{Bytes: size, Per: time.Hour}
	meta, fb := &failMeta{MetaStore: s.Meta}, &failBlobs{Blobs: s.Blobs}
	s.Meta, s.Blobs = meta, fb
	logs := captureLog(t)
	srv := serve(t, s)
	usage := func(uid string) int64 { return uploadedBytes(t, meta, uid) }

	fb.set(func(f *failBlobs) { f.put = fmt.Errorf("%w: 10047", persistence.ErrFull) })
	if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusInsufficientStorage {
		t.Fatalf("object store full: %d %v, want 507", status, got)
	}
	fb.set(func(f *failBlobs) { f.put = nil })
	meta.fail(errors.New("no quorum"))
	if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusInternalServerError {
		t.Fatalf("metadata failing: %d %v, want 500", status, got)
	}
	meta.fail(nil)
	if n := usage("u1"); n != 0 {
		t.Fatalf("after two refusals %d bytes counted, want 0", n)
	}
	if strings.Contains(logs.String(), "stays counted") {
		t.Errorf("refusals taken out of the quota logged as kept:\n%s", logs)
	}
	if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusOK {
		t.Fatalf("the whole quota after refusals: %d %v", status, got)
	}
	if n := usage("u1"); n != size {
		t.Errorf("%d bytes counted, want %d", n, size)
	}

	meta.failTakeBack(errors.New("no quorum"))
	fb.set(func(f *failBlobs) { f.put = fmt.Errorf("%w: 10047", persistence.ErrFull) })
	if status, got, _ := upload(t, srv.URL, "u2", noisePNG(t, 48, 48)); status != http.StatusInsufficientStorage {
		t.Fatalf("object store full: %d %v, want 507", status, got)
	}
	if l := logs.String(); !strings.Contains(l, "a refused upload stays counted against the quota") || !strings.Contains(l, "uid=u2") || !strings.Contains(l, "no quorum") {
		t.Errorf("a refusal the store kept counted is not logged with its user and error:\n%s", l)
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
		logs := captureLog(t)
		if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusOK {
			t.Fatalf("%d %v, want 200", status, got)
		}
		if !strings.Contains(logs.String(), "upload not counted against the quota") {
			t.Errorf("the failure is not logged: %q", logs.String())
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
		// An empty body says its length too: refused as malformed, not for the disk.
		if status, got := post(t, srv, "u1", bytes.NewReader(nil), ctype); status != http.StatusBadRequest {
			t.Fatalf("empty body: %d %v, want 400", status, got)
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
	// An upload that leaves exactly the minimum free, beside another in flight, is
	// admitted; a byte more is not. The free space of a real disk may move between
	// two looks: a try counts only when it stood still across it.
	t.Run("to the byte", func(t *testing.T) {
		dir := t.TempDir()
		store, err := persistence.OpenBadger(filepath.Join(dir, "store"), persistence.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		s := &Service{Dir: filepath.Join(dir, "media"), Meta: store, Authenticate: session, Now: func() time.Time { return testNow }}
		if err := s.Open(); err != nil {
			t.Fatal(err)
		}
		const inFlight, n = 3 << 20, 1 << 20
		for try := 1; ; try++ {
			before := free(t, s.Dir)
			s.MinFreeDisk = before - inFlight - n
			other, err := s.admit("u1", inFlight, 1)
			if err != nil {
				t.Fatalf("first upload: %v", err)
			}
			fit, errFit := s.admit("u2", n, 1)
			if errFit == nil {
				s.release(fit)
			}
			over, errOver := s.admit("u2", n+1, 1)
			if errOver == nil {
				s.release(over)
			}
			s.release(other)
			if free(t, s.Dir) != before {
				if try == 20 {
					t.Fatal("the disk's free space changed during each of 20 tries")
				}
				continue
			}
			if errFit != nil {
				t.Errorf("an upload leaving exactly the minimum free: %v", errFit)
			}
			if !errors.As(errOver, new(*lowDiskError)) {
				t.Errorf("an upload leaving a byte less than the minimum: %v, want lowDiskError", errOver)
			}
			return
		}
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
	if status, got, _ := upload(t, srv.URL, "u1", declaring(t, "png", 20000, 20000)); got["message"] != "image too large: 20000x20000 is 400.0 megapixels, more than 40" {
		t.Errorf("bomb: %d %v", status, got)
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

// An upload that fills the quota exactly is accepted; the next byte is not.
func TestUploadQuotaExactFit(t *testing.T) {
	s, meta := newService(t)
	imgs := [][]byte{noisePNG(t, 200, 200), noisePNG(t, 200, 200), noisePNG(t, 200, 200)}
	size := int64(len(imgs[0]))
	s.Quota = Quota{Bytes: 2 * size, Per: time.Hour}
	srv := serve(t, s)
	for i, img := range imgs[:2] {
		if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusOK {
			t.Fatalf("upload %d of an exact fit: %d %v", i, status, got)
		}
	}
	if status, got, _ := upload(t, srv.URL, "u1", imgs[2]); status != http.StatusTooManyRequests {
		t.Fatalf("past the quota: %d %v, want 429", status, got)
	}
	// A file as large as the whole quota fits when nothing else was uploaded.
	s2, _ := newService(t)
	s2.Quota = Quota{Bytes: size, Per: time.Hour}
	srv2 := serve(t, s2)
	if status, got, _ := upload(t, srv2.URL, "u1", imgs[2]); status != http.StatusOK {
		t.Fatalf("file as large as the quota: %d %v", status, got)
	}
	if got := meta.uploaded(t, "u1"); got != 2*size {
		t.Errorf("recorded %d, want %d", got, 2*size)
	}
}

// Reservations of uploads in flight count against the user's quota, and only theirs.
func TestQuotaReservations(t *testing.T) {
	s, meta := newService(t)
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	s.Quota = Quota{Bytes: 150, Per: time.Hour}
	s.MinFreeDisk = -1
	h1, err := s.admit("u", 100, 100)
	if err != nil {
		t.Fatal(err)
	}
	var qe *quotaError
	if _, err := s.admit("u", 51, 51); !errors.As(err, &qe) || qe.retry != 0 || !strings.Contains(qe.msg, "100B used, this upload needs at least 51B; try again later") {
		t.Fatalf("admit past a reservation: %v, want a quota error with no retry time", err)
	}
	// A body of unknown length needs at least a byte: the message names no size then.
	if _, err := s.admit("u", 1<<20, 51); err == nil {
		t.Fatal("admit past a reservation succeeded")
	}
	if _, err := s.admit("u", 1<<20, 1); err != nil {
		t.Fatalf("admit of an unknown length with room left: %v", err)
	}
	s.held["u"], s.heldAll = 150, 150 // as if uploads in flight took all of it
	if _, err := s.admit("u", 1<<20, 1); !errors.As(err, &qe) || !strings.HasSuffix(qe.msg, "150B used; try again later") {
		t.Fatalf("admit of an unknown length at the quota: %v", err)
	}
	s.held["u"], s.heldAll = 100, 100
	h2, err := s.admit("u", 50, 50) // fills it exactly
	if err != nil {
		t.Fatalf("admit to the brim: %v", err)
	}
	s.release(h2)
	if h, err := s.admit("v", 100, 100); err != nil {
		t.Fatalf("another user: %v", err)
	} else {
		s.release(h)
	}
	// The staged file came out larger than its reservation.
	if err := s.settle(h1, 120); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admit("u", 31, 31); err == nil {
		t.Fatal("admit past the settled size succeeded")
	}
	if err := s.settle(h1, 151); !errors.As(err, &qe) || !strings.Contains(qe.msg, "larger than the whole quota") {
		t.Fatalf("settle past the quota: %v", err)
	}
	if h1.n != 0 || len(s.held) != 0 || s.heldAll != 0 {
		t.Fatalf("a refused settle keeps %d (held %v, %d)", h1.n, s.held, s.heldAll)
	}
	h1, _ = s.admit("u", 1, 1)
	if err := s.settle(h1, 120); err != nil {
		t.Fatal(err)
	}
	s.record(h1)
	s.release(h1)
	s.release(h1) // twice does nothing
	if len(s.held) != 0 || s.heldAll != 0 || meta.uploaded(t, "u") != 120 {
		t.Fatalf("after record: held %v, %d; recorded %d", s.held, s.heldAll, meta.uploaded(t, "u"))
	}
	if err := s.settle(&hold{uid: "u"}, 31); !errors.As(err, &qe) || !strings.Contains(qe.msg, "120B used, this file is 31B") {
		t.Fatalf("settle past recorded usage: %v", err)
	}
	// A file as large as the whole quota fits once the window is empty again: say when.
	if err := s.settle(&hold{uid: "u"}, 150); !errors.As(err, &qe) || qe.retry != 59*time.Minute+59*time.Second || !strings.Contains(qe.msg, "reached") {
		t.Fatalf("settle of the quota's size after usage: %v (retry %v)", err, qe.retry)
	}
}

func TestRetryAfter(t *testing.T) {
	t0 := testNow.Truncate(time.Hour)
	recs := []persistence.Upload{{At: t0, Bytes: 100}, {At: t0.Add(10 * time.Minute), Bytes: 50}}
	now := t0.Add(30 * time.Minute)
	for _, tt := range []struct {
		over int64
		now  time.Time
		want time.Duration
	}{
		{1, now, 30*time.Minute + time.Second},
		{100, now, 30*time.Minute + time.Second},
		{101, now, 40*time.Minute + time.Second},
		{150, now, 40*time.Minute + time.Second},
		{151, now, 0},
		{100, now.Add(500 * time.Millisecond), 30 * time.Minute},
		{1, t0.Add(2 * time.Hour), time.Second}, // already out of the window: at once
	} {
		if got := retryAfter(recs, tt.over, tt.now, time.Hour); got != tt.want {
			t.Errorf("retryAfter(over %d, at %v) = %v, want %v", tt.over, tt.now.Sub(t0), got, tt.want)
		}
	}
}

func TestFreeBytes(t *testing.T) {
	for _, tt := range []struct{ avail, bsize, want int64 }{
		{0, 4096, 0}, {1, 4096, 4096}, {-1, 4096, 0}, {10, 0, 0}, {10, -1, 0}, {10, 1, 10},
		{math.MaxInt64 / 4096, 4096, math.MaxInt64 / 4096 * 4096},
		{math.MaxInt64/4096 + 1, 4096, math.MaxInt64},
	} {
		if got := freeBytes(tt.avail, tt.bsize); got != tt.want {
			t.Errorf("freeBytes(%d, %d) = %d, want %d", tt.avail, tt.bsize, got, tt.want)
		}
	}
}

// Uploads just under the limit pass, with their form around them.
func TestUploadLimitEdges(t *testing.T) {
	s, _ := newService(t)
	s.MaxBytes = 100 << 10
	srv := serve(t, s)
	img := noisePNG(t, 150, 150) // about 90 KiB: more than the limit less the form's allowance
	if n := int64(len(img)); n > s.MaxBytes || n < s.MaxBytes-formSlack {
		t.Fatalf("test image of %d bytes", n)
	}
	if status, got, _ := upload(t, srv.URL, "u1", img); status != http.StatusOK {
		t.Fatalf("file under the limit: %d %v", status, got)
	}
	// A body of exactly the limit plus the allowance is read; one byte more is refused unread.
	body := func(total int) ([]byte, string) {
		var pad int
		for {
			var b bytes.Buffer
			mw := multipart.NewWriter(&b)
			mw.SetBoundary("edge")
			mw.WriteField("pad", strings.Repeat("x", pad))
			fw, _ := mw.CreateFormFile("file", "a.png")
			fw.Write(img)
			mw.Close()
			if b.Len() >= total {
				if b.Len() != total {
					t.Fatalf("body of %d bytes, want %d", b.Len(), total)
				}
				return b.Bytes(), mw.FormDataContentType()
			}
			pad += total - b.Len()
		}
	}
	b, ctype := body(int(s.MaxBytes + formSlack))
	if status, got := post(t, srv, "u1", bytes.NewReader(b), ctype); status != http.StatusOK {
		t.Fatalf("body of the limit plus the allowance: %d %v", status, got)
	}
	b, ctype = body(int(s.MaxBytes+formSlack) + 1)
	if status, got := post(t, srv, "u1", bytes.NewReader(b), ctype); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("one byte more: %d %v", status, got)
	}
}

// Committing an upload leaves no file open.
func TestCommitClosesFiles(t *testing.T) {
	s, _ := newService(t)
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatalf("counting open files: %v", err)
		}
		return len(ents)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no finalizer may close what leaked
	before := fds()
	for range 20 {
		st, err := s.files().stage(bytes.NewReader(noisePNG(t, 4, 4)), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.files().commit(st); err != nil {
			t.Fatal(err)
		}
	}
	if after := fds(); after > before {
		t.Fatalf("%d files open after 20 commits, %d before", after, before)
	}
}
