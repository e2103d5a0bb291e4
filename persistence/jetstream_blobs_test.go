package persistence_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// A stream of the object store that fails or ends short part-way (an R1
// consumer on a copy still catching up, a leader lost) is opened again where
// it stopped: the reader gets every byte once, without an error. When it
// cannot be opened again it ends in an error, never short and looking whole;
// a blob deleted meanwhile ends in ErrNotFound. Every stream is closed.
func TestJetStreamBlobsResume(t *testing.T) {
	s := openJetStream(t, 1, 0, persistence.NextPrefix())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := persistence.OpenJetStreamBlobs(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640 KB: five chunks
	if err := b.Put("abc", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	const chunk = 128 << 10
	refused := errors.New("nats: no responders available for request")
	var (
		mu          sync.Mutex
		opens, open int
		cuts        []error // what the next streams return after a chunk, in order
		failOpens   bool    // opens after the first fail
		onCut       func()  // runs at the first cut
	)
	b.WrapStreams(300*time.Millisecond, func(openBlob func(string) (io.ReadCloser, int64, error), id string) (io.ReadCloser, int64, error) {
		mu.Lock()
		if failOpens && opens > 0 {
			mu.Unlock()
			return nil, 0, refused
		}
		var cut error
		if len(cuts) > 0 {
			cut, cuts = cuts[0], cuts[1:]
		}
		mu.Unlock()
		rc, n, err := openBlob(id)
		if err != nil {
			return nil, 0, err
		}
		mu.Lock()
		opens++
		open++
		mu.Unlock()
		closed := func() { mu.Lock(); open--; mu.Unlock() }
		return &testStream{rc: rc, left: chunk, cut: cut, closed: closed, onCut: onCut}, n, nil
	})
	digest := errors.New("nats: received a corrupt object, digests do not match")
	for _, tt := range []struct {
		name      string
		cuts      []error
		failOpens bool
		deleted   bool
		opens     int
		want      error // nil: every byte
	}{
		{name: "short with a digest error, twice", cuts: []error{digest, digest}, opens: 3},
		{name: "early end", cuts: []error{io.EOF}, opens: 2},
		{name: "timeout", cuts: []error{errors.New("nats: timeout")}, opens: 2},
		{name: "cannot open again", cuts: []error{io.EOF}, failOpens: true, opens: 1, want: refused},
		{name: "deleted meanwhile", cuts: []error{io.EOF}, deleted: true, opens: 1, want: persistence.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.deleted { // the blob is gone when the stream is first cut
				defer func() {
					if err := b.Put("abc", bytes.NewReader(data)); err != nil {
						t.Fatal(err)
					}
				}()
			}
			mu.Lock()
			opens, cuts, failOpens, onCut = 0, tt.cuts, tt.failOpens, nil
			if tt.deleted {
				onCut = func() {
					if err := b.Delete("abc"); err != nil {
						t.Error(err)
					}
				}
			}
			mu.Unlock()
			r, size, err := b.Open("abc")
			if err != nil || size != int64(len(data)) {
				t.Fatalf("Open: %d, %v", size, err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			mu.Lock()
			gotOpens, stillOpen := opens, open
			mu.Unlock()
			if tt.want == nil {
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("read %d of %d bytes, %v; want them all, equal", len(got), len(data), err)
				}
			} else if !errors.Is(err, tt.want) || len(got) != chunk {
				t.Errorf("read %d bytes, %v; want %d and %v", len(got), err, chunk, tt.want)
			}
			if gotOpens != tt.opens || stillOpen != 0 {
				t.Errorf("%d streams opened, %d left open; want %d and none", gotOpens, stillOpen, tt.opens)
			}
		})
	}
}

// testStream passes left bytes on, then returns cut (nil: never cut).
type testStream struct {
	rc     io.ReadCloser
	left   int64
	cut    error
	closed func()
	onCut  func()
	once   sync.Once
}

func (s *testStream) Read(p []byte) (int, error) {
	if s.cut != nil {
		if s.left <= 0 {
			if s.onCut != nil {
				s.onCut()
				s.onCut = nil
			}
			return 0, s.cut
		}
		p = p[:min(int64(len(p)), s.left)]
	}
	n, err := s.rc.Read(p)
	s.left -= int64(n)
	return n, err
}

func (s *testStream) Close() error {
	s.once.Do(s.closed)
	return s.rc.Close()
}
