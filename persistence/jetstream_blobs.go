package persistence

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrFull is returned when the store has no room left for what is written.
var ErrFull = errors.New("persistence: store full")

// JetStreamBlobs keeps uploaded media bytes in a JetStream object store, so
// that a file uploaded on one node can be served by every node (it is
// media.Service's Blobs in cluster mode). Names are the media ids (content
// hashes): an object never changes once written.
type JetStreamBlobs struct {
	obs     jetstream.ObjectStore
	s       *JetStream // for reads from the leader
	bucket  string
	timeout time.Duration
	resume  time.Duration                                 // how long a broken stream is opened again
	get     func(id string) (io.ReadCloser, int64, error) // one stream of the object (tests cut it)
}

// resumeFor outlasts an election of the object store's stream leader.
const resumeFor = 10 * time.Second

// OpenJetStreamBlobs creates (or finds) the MEDIA object store next to the
// store s, with the same copies and prefix.
func OpenJetStreamBlobs(ctx context.Context, s *JetStream) (*JetStreamBlobs, error) {
	name := "MEDIA"
	if s.o.Prefix != "" {
		name = s.o.Prefix + "_MEDIA"
	}
	b := &JetStreamBlobs{s: s, bucket: name, timeout: 2 * time.Minute, resume: resumeFor}
	b.get = b.stream
	err := jsRetryCreate(ctx, "media object store", func(ctx context.Context) error {
		var err error
		b.obs, err = s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      name,
			Description: "pandachat media bytes by id",
			Storage:     jetstream.FileStorage,
			Replicas:    s.o.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream media: %w", err)
	}
	return b, nil
}

// Put stores r under id; when it returns, a majority of the copies have the
// bytes. Writing an id that exists writes the same bytes again (ids are
// content hashes); callers skip it when Has says so. While the cluster has no
// leader (an election takes seconds) a reader that can seek back is written
// again; a store out of space gives ErrFull.
func (b *JetStreamBlobs) Put(id string, r io.Reader) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	giveUp := time.Now().Add(20 * time.Second) // longer than an election
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		_, err := b.obs.Put(ctx, jetstream.ObjectMeta{Name: id}, r)
		if err == nil || !jsTransient(err) || ctx.Err() != nil || time.Now().After(giveUp) {
			return blobErr(err)
		}
		sk, ok := r.(io.Seeker)
		if !ok {
			return err
		}
		time.Sleep(wait)
		if _, serr := sk.Seek(0, io.SeekStart); serr != nil {
			return err
		}
	}
}

// blobErr turns JetStream's "no room" answers (storage or account limits
// reached: 10047, 10002) into ErrFull.
func blobErr(err error) error {
	var api *jetstream.APIError
	if errors.As(err, &api) && (api.ErrorCode == 10047 || api.ErrorCode == 10002) {
		return fmt.Errorf("%w: %w", ErrFull, err)
	}
	return err
}

// Delete removes id's bytes; an unknown id is no error.
func (b *JetStreamBlobs) Delete(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := b.obs.Delete(ctx, id)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	return err
}

// Has reports whether id is stored, asking the leader when the nearest
// replica does not have it yet.
func (b *JetStreamBlobs) Has(id string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := b.obs.GetInfo(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case !errors.Is(err, jetstream.ErrObjectNotFound):
		return false, err
	}
	m, err := b.s.leaderGet(ctx, "OBJ_"+b.bucket, msgRequest{LastBySubj: b.metaSubject(id)})
	if err != nil || m == nil {
		return false, err
	}
	var info struct {
		Deleted bool `json:"deleted"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return false, fmt.Errorf("jetstream media %s: %w", id, err)
	}
	return !info.Deleted, nil // a deleted object keeps its description, marked
}

// Open returns id's bytes and size, or ErrNotFound. An object the leader has
// and the nearest replica not yet (uploaded on another node a moment ago) is
// waited for, up to a few seconds. A stream that fails or ends short part-way
// is opened again where it stopped (blobStream), so a read that ends without
// an error has every byte.
func (b *JetStreamBlobs) Open(id string) (io.ReadCloser, int64, error) {
	rc, size, err := b.get(id)
	if err != nil {
		return nil, 0, err
	}
	return &blobStream{b: b, id: id, size: size, rc: rc}, size, nil
}

// stream opens one stream of id's bytes from the object store.
func (b *JetStreamBlobs) stream(id string) (io.ReadCloser, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	for wait, waited := 20*time.Millisecond, time.Duration(0); ; wait *= 2 {
		res, err := b.obs.Get(ctx, id)
		if err == nil {
			info, ierr := res.Info()
			if ierr != nil {
				res.Close()
				cancel()
				return nil, 0, ierr
			}
			return readCloser{res, cancel}, int64(info.Size), nil
		}
		if !errors.Is(err, jetstream.ErrObjectNotFound) || waited > 3*time.Second {
			cancel()
			if errors.Is(err, jetstream.ErrObjectNotFound) {
				err = ErrNotFound
			}
			return nil, 0, err
		}
		if ok, herr := b.Has(id); herr != nil || !ok {
			cancel()
			if herr == nil {
				herr = ErrNotFound
			}
			return nil, 0, herr
		}
		time.Sleep(wait)
		waited += wait
	}
}

// metaSubject is where the object store keeps id's description.
func (b *JetStreamBlobs) metaSubject(id string) string {
	return "$O." + b.bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(id))
}

// readCloser ends the read's context with the read.
type readCloser struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (r readCloser) Close() error {
	err := r.ReadCloser.Close()
	r.cancel()
	return err
}

// blobStream reads an object and opens it again where it stopped when its
// stream fails or ends short: an object store read is an R1 consumer that may
// sit on a copy still catching up (it then ends early with a digest error), or
// lose its leader. It gives up after b.resume without progress.
type blobStream struct {
	b    *JetStreamBlobs
	id   string
	size int64
	rc   io.ReadCloser // nil after a failure: the next read opens it again
	at   int64         // bytes read so far
}

func (s *blobStream) Read(p []byte) (int, error) {
	if s.at >= s.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	var giveUp time.Time
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		n, err := s.read(p)
		if n > 0 {
			if s.at >= s.size {
				return n, io.EOF
			}
			return n, nil
		}
		s.drop()
		if errors.Is(err, ErrNotFound) {
			return 0, err // deleted meanwhile: opening again cannot help
		}
		if err == io.EOF || err == nil {
			err = io.ErrUnexpectedEOF // the stream ended before size bytes
		}
		if giveUp.IsZero() {
			giveUp = time.Now().Add(s.b.resume)
		}
		if time.Now().Add(wait).After(giveUp) {
			return 0, fmt.Errorf("jetstream media %s: read %d of %d bytes: %w", s.id, s.at, s.size, err)
		}
		time.Sleep(wait)
	}
}

// read reads from the stream, opened again at s.at when it is not open.
func (s *blobStream) read(p []byte) (int, error) {
	if s.rc == nil {
		rc, _, err := s.b.get(s.id)
		if err != nil {
			return 0, err
		}
		s.rc = rc
		if _, err := io.CopyN(io.Discard, rc, s.at); err != nil {
			return 0, err
		}
	}
	n, err := s.rc.Read(p[:min(int64(len(p)), s.size-s.at)])
	s.at += int64(n)
	if n > 0 && err != nil && s.at < s.size {
		s.drop() // keep the bytes; the next read opens it again
	}
	return n, err
}

func (s *blobStream) drop() {
	if s.rc != nil {
		s.rc.Close()
		s.rc = nil
	}
}

func (s *blobStream) Close() error {
	if s.rc == nil {
		return nil
	}
	err := s.rc.Close()
	s.rc = nil
	return err
}
