package persistence

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamBlobs keeps uploaded media bytes in a JetStream object store, so
// that a file uploaded on one node can be served by every node. Names are the
// media ids (content hashes): an object never changes once written.
//
// It is the piece multi-node media needs next to the metadata in the Store;
// media.Service does not use it yet (its bytes are on the local disk).
type JetStreamBlobs struct {
	obs     jetstream.ObjectStore
	s       *JetStream // for reads from the leader
	bucket  string
	timeout time.Duration
}

// OpenJetStreamBlobs creates (or finds) the MEDIA object store next to the
// store s, with the same copies and prefix.
func OpenJetStreamBlobs(ctx context.Context, s *JetStream) (*JetStreamBlobs, error) {
	name := "MEDIA"
	if s.o.Prefix != "" {
		name = s.o.Prefix + "_MEDIA"
	}
	b := &JetStreamBlobs{s: s, bucket: name, timeout: 2 * time.Minute}
	err := jsRetry(ctx, "media object store", func(ctx context.Context) error {
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

// Put stores r under id. Writing an id that exists writes the same bytes
// again (ids are content hashes); callers skip it when Has says so.
func (b *JetStreamBlobs) Put(id string, r io.Reader) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	_, err := b.obs.Put(ctx, jetstream.ObjectMeta{Name: id}, r)
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
	return m.Header.Get("KV-Operation") == "" && len(m.Data) > 0, nil
}

// Open returns id's bytes and size, or ErrNotFound. An object the leader has
// and the nearest replica not yet (uploaded on another node a moment ago) is
// waited for, up to a few seconds.
func (b *JetStreamBlobs) Open(id string) (io.ReadCloser, int64, error) {
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
