package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/cluster"
	"github.com/pandachat/pandachat/persistence"
)

// clusterServices starts n embedded JetStream nodes on loopback (one copy of
// everything per node) and returns one Service per node, as cluster mode
// wires them: metadata in the replicated store, bytes in its object store,
// each with a media directory of its own.
func clusterServices(t *testing.T, n int) []*Service {
	t.Helper()
	var addrs []string
	if n > 1 {
		for range n {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addrs = append(addrs, l.Addr().String())
			l.Close()
		}
	}
	dir := t.TempDir()
	nodes := make([]*cluster.Node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		o := cluster.Options{Name: fmt.Sprintf("n%d", i+1), Dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), StartTimeout: 30 * time.Second}
		if n > 1 {
			o.Listen, o.Peers = addrs[i], addrs
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = cluster.Start(o)
		}()
	}
	wg.Wait()
	for _, nd := range nodes {
		if nd != nil {
			t.Cleanup(func() { nd.Close() })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := make([]*Service, n)
	for i, nd := range nodes {
		st, err := persistence.OpenJetStream(ctx, nd.JetStream(), persistence.JetStreamOptions{Replicas: n})
		if err != nil {
			t.Fatal(err)
		}
		b, err := persistence.OpenJetStreamBlobs(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = &Service{
			Dir:          filepath.Join(dir, fmt.Sprintf("media%d", i+1)),
			Meta:         st,
			Blobs:        b,
			BlobsDir:     filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			Authenticate: session,
			Now:          func() time.Time { return testNow },
		}
	}
	return out
}

// An image uploaded on one node is served by the others byte for byte, with
// the headers, ranges and validators of the single-node path; nothing of it
// stays in any node's media directory; an unknown id, or metadata without
// bytes, is 404 everywhere; the same bytes uploaded on another node are one
// object with one owner; the quota counts uploads on every node.
func TestClusterMediaAcrossNodes(t *testing.T) {
	svcs := clusterServices(t, 3)
	srvs := make([]*httptest.Server, len(svcs))
	for i, s := range svcs {
		s.Quota = Quota{Bytes: 3 << 20, Per: time.Hour}
		srvs[i] = serve(t, s)
	}
	img := noisePNG(t, 700, 400) // about 1 MiB: several chunks of the object store
	id := stored(t, srvs[0], img)
	for i := 1; i < 3; i++ {
		t.Run(fmt.Sprintf("node %d", i+1), func(t *testing.T) { checkServe(t, srvs[i], id, img) })
	}
	for i := 1; i < 3; i++ {
		got, status := fetch(t, srvs[i].URL+"/media/"+id, nil)
		if status != 200 || !bytes.Equal(got, img) {
			t.Fatalf("node %d: %d, %d bytes; want the %d uploaded on node 1", i+1, status, len(got), len(img))
		}
	}
	// Ranges out of order: the second one is behind the first in the stream.
	resp := get(t, srvs[2].URL+"/media/"+id, map[string]string{"Range": "bytes=500000-500009,10-19,-5"})
	parts := byteRanges(t, resp)
	if want := [][]byte{img[500000:500010], img[10:20], img[len(img)-5:]}; resp.StatusCode != 206 || fmt.Sprint(parts) != fmt.Sprint(want) {
		t.Errorf("three ranges: %d %v, want 206 %v", resp.StatusCode, parts, want)
	}

	orphan := strings.Repeat("ab", 32)
	if err := svcs[0].Meta.PutMedia(persistence.Media{ID: orphan, MIME: "image/png", Size: 10}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{strings.Repeat("0", 64), orphan, strings.ToUpper(id), "tmp"} {
		for i, srv := range srvs {
			if body, status := fetch(t, srv.URL+"/media/"+path, nil); status != 404 || !strings.Contains(string(body), codeNotFound) {
				t.Errorf("node %d GET /media/%s: %d %s, want 404", i+1, path, status, body)
			}
		}
	}

	status, again, _ := upload(t, srvs[1].URL, "u2", img)
	if status != 200 || again["id"] != id {
		t.Fatalf("the same bytes on node 2: %d %v", status, again)
	}
	if m, err := svcs[2].Meta.Media(id); err != nil || m.Owner != "u1" {
		t.Errorf("metadata after a second upload: %+v %v, want owner u1", m, err)
	}
	for i, s := range svcs {
		if f := storedFiles(t, s.Dir); len(f) != 0 {
			t.Errorf("node %d keeps files in its media directory: %v", i+1, f)
		}
	}

	// u1 stored about 1 MiB on node 1; 2 MiB more on node 3 is over the 3 MiB quota.
	big := noisePNG(t, 1000, 700)
	if status, got, _ := upload(t, srvs[2].URL, "u1", big); status != http.StatusTooManyRequests {
		t.Errorf("over the quota on another node: %d %v, want 429", status, got)
	}
	if status, got, _ := upload(t, srvs[2].URL, "u3", big); status != 200 {
		t.Errorf("another user on node 3: %d %v", status, got)
	}

	// Six uploads of one user at once, two on each node, where two fit the
	// quota: never more than two are stored, and what is refused is not counted.
	imgs := make([][]byte, 6)
	for i := range imgs {
		imgs[i] = noisePNG(t, 700, 400)
	}
	size := int64(len(imgs[0]))
	statuses := make([]int, len(imgs))
	var wg sync.WaitGroup
	for i, b := range imgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _, _ = upload(t, srvs[i%3].URL, "burst", b)
		}()
	}
	wg.Wait()
	accepted := 0
	for _, st := range statuses {
		switch st {
		case 200:
			accepted++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("burst: status %d", st)
		}
	}
	usage := func() int64 { return uploadedBytes(t, svcs[1].Meta, "burst") }
	if n := usage(); accepted > 2 || n != int64(accepted)*size {
		t.Fatalf("burst: %d accepted %v, %d bytes counted; want at most 2 of %d bytes each, counted", accepted, statuses, n, size)
	}
	status, _, _ = upload(t, srvs[0].URL, "burst", noisePNG(t, 700, 400))
	if want := map[bool]int{true: 200, false: 429}[accepted < 2]; status != want {
		t.Errorf("after a burst of which %d were accepted, one more: %d, want %d", accepted, status, want)
	}
	t.Logf("burst: %d of 6 accepted", accepted)
}

// One node of a cluster: what its disk and the object store refuse, and
// failures of the object store or of the metadata, get the single-node path's
// answers, and a refused upload leaves nothing behind.
func TestClusterMediaFailures(t *testing.T) {
	s := clusterServices(t, 1)[0]
	real, meta := s.Blobs, &failMeta{MetaStore: s.Meta}
	fb := &failBlobs{Blobs: real}
	s.Blobs, s.Meta = fb, meta
	srv := serve(t, s)
	storedID := stored(t, srv, pngOf(t, 8, 8))

	cases := []struct {
		name   string
		set    func()
		status int
		code   string
	}{
		{"object store full", func() { fb.set(func(f *failBlobs) { f.put = fmt.Errorf("%w: 10047", persistence.ErrFull) }) }, 507, codeStorageFull},
		{"object store failing", func() { fb.set(func(f *failBlobs) { f.put = errors.New("no leader") }) }, 500, codeStorage},
		{"cannot tell whether stored", func() { fb.set(func(f *failBlobs) { f.has = errors.New("timeout") }) }, 500, codeStorage},
		{"metadata failing", func() { meta.fail(errors.New("no quorum")) }, 500, codeStorage}, // after the bytes went in
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := noisePNG(t, 32, 32)
			c.set()
			status, got, _ := upload(t, srv.URL, "u1", img)
			if status != c.status || got["error"] != c.code {
				t.Fatalf("%d %v, want %d %s", status, got, c.status, c.code)
			}
			id := idOf(img)
			if ok, err := real.Has(id); err != nil || ok {
				t.Errorf("bytes of a refused upload stored: %v %v", ok, err)
			}
			if _, err := s.Meta.Media(id); !errors.Is(err, persistence.ErrNotFound) {
				t.Errorf("metadata of a refused upload: %v", err)
			}
			// Once the store is well again the same upload goes in and is served.
			fb.set(func(f *failBlobs) { f.put, f.has = nil, nil })
			meta.fail(nil)
			if status, got, _ := upload(t, srv.URL, "u1", img); status != 200 || got["id"] != id {
				t.Fatalf("again: %d %v", status, got)
			}
			if body, status := fetch(t, srv.URL+"/media/"+id, nil); status != 200 || !bytes.Equal(body, img) {
				t.Fatalf("GET after the retry: %d, %d bytes", status, len(body))
			}
		})
	}

	t.Run("reading fails", func(t *testing.T) {
		fb.set(func(f *failBlobs) { f.open = errors.New("no responders") })
		defer fb.set(func(f *failBlobs) { f.open = nil })
		if body, status := fetch(t, srv.URL+"/media/"+storedID, nil); status != 500 || !strings.Contains(string(body), codeStorage) {
			t.Fatalf("%d %s, want 500 %s", status, body, codeStorage)
		}
	})

	t.Run("disk of the object store short of space", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("needs a file system with no free space: /proc on Linux")
		}
		short := &Service{Dir: s.Dir, Meta: s.Meta, Blobs: s.Blobs, BlobsDir: "/proc", MinFreeDisk: 1, Authenticate: session}
		if status, got, _ := upload(t, serve(t, short).URL, "u1", noisePNG(t, 8, 8)); status != 507 || got["error"] != codeStorageFull {
			t.Fatalf("%d %v, want 507", status, got)
		}
	})
}

// failMeta fails PutMedia, or AddUpload taking bytes out, on command.
type failMeta struct {
	MetaStore
	mu       sync.Mutex
	put      error
	takeBack error
}

func (f *failMeta) failTakeBack(err error) {
	f.mu.Lock()
	f.takeBack = err
	f.mu.Unlock()
}

func (f *failMeta) AddUpload(uid string, at time.Time, n int64, forget time.Time) error {
	f.mu.Lock()
	err := f.takeBack
	f.mu.Unlock()
	if err != nil && n < 0 {
		return err
	}
	return f.MetaStore.AddUpload(uid, at, n, forget)
}

func (f *failMeta) fail(err error) {
	f.mu.Lock()
	f.put = err
	f.mu.Unlock()
}

func (f *failMeta) PutMedia(m persistence.Media) error {
	f.mu.Lock()
	err := f.put
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.MetaStore.PutMedia(m)
}

func idOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// failBlobs fails on command in front of real Blobs.
type failBlobs struct {
	Blobs
	mu             sync.Mutex
	put, has, open error
}

// set changes the failures under the lock: the server reads them on its own goroutines.
func (f *failBlobs) set(change func(f *failBlobs)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *failBlobs) err(which *error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *which
}

func (f *failBlobs) Put(id string, r io.Reader) error {
	if err := f.err(&f.put); err != nil {
		return err
	}
	return f.Blobs.Put(id, r)
}

func (f *failBlobs) Has(id string) (bool, error) {
	if err := f.err(&f.has); err != nil {
		return false, err
	}
	return f.Blobs.Has(id)
}

func (f *failBlobs) Open(id string) (io.ReadCloser, int64, error) {
	if err := f.err(&f.open); err != nil {
		return nil, 0, err
	}
	return f.Blobs.Open(id)
}

// fetch GETs url and returns the body and the status.
func fetch(t *testing.T, url string, header map[string]string) ([]byte, int) {
	t.Helper()
	resp := get(t, url, header)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return b, resp.StatusCode
}

func get(t *testing.T, url string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// byteRanges reads the parts of a multipart/byteranges answer.
func byteRanges(t *testing.T, resp *http.Response) [][]byte {
	t.Helper()
	defer resp.Body.Close()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", resp.Header.Get("Content-Type"), err)
	}
	var out [][]byte
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

// Serving from the object store reads each blob once per answer and closes every
// stream it opens: a GET of a 1 MiB image opens it once and reads its bytes once
// (not once per read, which would move the blob many times across the cluster), a
// range reads up to its end, ranges out of order open it again only to go back, and
// no answer leaves a stream open (an object-store stream read part-way keeps its
// subscription on the NATS server until it is closed).
func TestClusterMediaStreams(t *testing.T) {
	s := clusterServices(t, 1)[0]
	cb := &countBlobs{Blobs: s.Blobs, closed: make(chan struct{}, 1)}
	s.Blobs = cb
	srv := serve(t, s)
	img := noisePNG(t, 700, 400) // several chunks of the object store
	id := stored(t, srv, img)
	size := int64(len(img))

	for _, tt := range []struct {
		name     string
		method   string
		header   map[string]string
		status   int
		body     []byte
		opens    int
		maxBytes int64 // read from the object store
	}{
		{name: "GET", method: "GET", status: 200, body: img, opens: 1, maxBytes: size},
		{name: "HEAD", method: "HEAD", status: 200, opens: 1},
		{name: "not modified", method: "GET", header: map[string]string{"If-None-Match": `"` + id + `"`}, status: 304, opens: 1},
		{name: "range", method: "GET", header: map[string]string{"Range": "bytes=10-19"}, status: 206, body: img[10:20], opens: 1, maxBytes: 20},
		{name: "range from the middle to the end", method: "GET", header: map[string]string{"Range": "bytes=500000-"}, status: 206, body: img[500000:], opens: 1, maxBytes: size},
		{name: "ranges forward", method: "GET", header: map[string]string{"Range": "bytes=10-19,500000-500009"}, status: 206, opens: 1, maxBytes: 500010},
		{name: "ranges out of order", method: "GET", header: map[string]string{"Range": "bytes=500000-500009,10-19,-5"}, status: 206, opens: 2, maxBytes: 500010 + size},
	} {
		ok := t.Run(tt.name, func(t *testing.T) {
			cb.reset()
			req, _ := http.NewRequest(tt.method, srv.URL+"/media/"+id, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tt.status || tt.body != nil && !bytes.Equal(got, tt.body) {
				t.Fatalf("%d, %d bytes, %v; want %d, %d bytes", resp.StatusCode, len(got), err, tt.status, len(tt.body))
			}
			opens, read := cb.settled(t)
			if opens != tt.opens || read > tt.maxBytes {
				t.Errorf("the blob of %d bytes was opened %d times and %d bytes were read; want %d and at most %d", size, opens, read, tt.opens, tt.maxBytes)
			}
		})
		if !ok {
			break // a stream left open would keep the next cases waiting too
		}
	}
}

// countBlobs counts the streams real Blobs open, the bytes read from them, and
// those still open.
type countBlobs struct {
	Blobs
	mu          sync.Mutex
	opens, open int
	read        int64
	closed      chan struct{} // signalled on every Close
}

func (c *countBlobs) Open(id string) (io.ReadCloser, int64, error) {
	rc, n, err := c.Blobs.Open(id)
	if err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	c.opens++
	c.open++
	c.mu.Unlock()
	return &countStream{ReadCloser: rc, c: c}, n, nil
}

func (c *countBlobs) reset() {
	c.mu.Lock()
	c.opens, c.read = 0, 0
	c.mu.Unlock()
}

// settled waits until every stream is closed (the handler closes its own when it
// returns, which may be after the client has the whole answer) and returns the
// streams opened and the bytes read since reset.
func (c *countBlobs) settled(t *testing.T) (opens int, read int64) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		open, opens, read := c.open, c.opens, c.read
		c.mu.Unlock()
		if open == 0 {
			return opens, read
		}
		select {
		case <-c.closed:
		case <-deadline:
			t.Fatalf("%d streams of the object store still open 10 s after the answer (%d opened)", open, opens)
		}
	}
}

type countStream struct {
	io.ReadCloser
	c    *countBlobs
	once sync.Once
}

func (s *countStream) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	s.c.mu.Lock()
	s.c.read += int64(n)
	s.c.mu.Unlock()
	return n, err
}

func (s *countStream) Close() error {
	s.once.Do(func() {
		s.c.mu.Lock()
		s.c.open--
		s.c.mu.Unlock()
		select {
		case s.c.closed <- struct{}{}:
		default:
		}
	})
	return s.ReadCloser.Close()
}

// A blob stream that breaks for good part-way through an answer (the object
// store resumes a broken stream itself, so an error it returns is final) ends
// the answer in an error, never short and looking whole; a second stream is
// never opened for it, and every stream is closed.
func TestClusterMediaStreamCutMidway(t *testing.T) {
	s := clusterServices(t, 1)[0]
	cb := &cutBlobs{countBlobs: countBlobs{Blobs: s.Blobs, closed: make(chan struct{}, 1)}}
	s.Blobs = cb
	srv := serve(t, s)
	img := noisePNG(t, 700, 400) // several chunks of the object store
	id := stored(t, srv, img)
	const chunk = 128 << 10 // one chunk of the object store
	if len(img) < 4*chunk {
		t.Fatalf("the image is %d bytes; the test needs several chunks", len(img))
	}

	for _, tt := range []struct {
		name   string
		cut    error // what the cut stream returns after its bytes
		header map[string]string
		status int
		want   int // bytes the client gets before the error
	}{
		{name: "error after a chunk", cut: errors.New("nats: timeout"), status: 200, want: chunk},
		{name: "early end", cut: io.EOF, status: 200, want: chunk},
		{name: "range", cut: errors.New("nats: no responders available for request"),
			header: map[string]string{"Range": "bytes=100000-"}, status: 206, want: chunk - 100000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cb.reset()
			cb.cutNext(chunk, tt.cut)
			resp := get(t, srv.URL+"/media/"+id, tt.header)
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if err == nil || len(got) != tt.want {
				t.Fatalf("read %d bytes with error %v; want %d and an error", len(got), err, tt.want)
			}
			if opens, _ := cb.settled(t); opens != 1 {
				t.Errorf("the blob was opened %d times; want 1", opens)
			}
		})
	}
}

// cutBlobs cuts the next stream it opens after a number of bytes, with an
// error or an early end.
type cutBlobs struct {
	countBlobs
	armed bool
	after int64
	cut   error
}

func (c *cutBlobs) cutNext(after int64, cut error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed, c.after, c.cut = true, after, cut
}

func (c *cutBlobs) Open(id string) (io.ReadCloser, int64, error) {
	c.mu.Lock()
	cut := c.armed
	c.armed = false
	after, cutErr := c.after, c.cut
	c.mu.Unlock()
	rc, n, err := c.countBlobs.Open(id)
	if err != nil || !cut {
		return rc, n, err
	}
	return &cutStream{ReadCloser: rc, left: after, err: cutErr}, n, nil
}

// cutStream passes left bytes on, then returns err.
type cutStream struct {
	io.ReadCloser
	left int64
	err  error
}

func (s *cutStream) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, s.err
	}
	n, err := s.ReadCloser.Read(p[:min(int64(len(p)), s.left)])
	s.left -= int64(n)
	return n, err
}
