package media

import (
	"errors"
	"io"
)

// Blobs keeps media bytes where every node of a cluster reads them;
// persistence.JetStreamBlobs satisfies it. Ids are content hashes, so a blob
// never changes once written. Service.Blobs nil keeps the bytes on the local
// disk under Dir.
type Blobs interface {
	Put(id string, r io.Reader) error             // durable on every copy it needs when it returns
	Has(id string) (bool, error)                  // whether all of id's bytes are stored
	Open(id string) (io.ReadCloser, int64, error) // the bytes and their size; persistence.ErrNotFound when unknown
	Delete(id string) error
}

// putBlob stores the staged upload in s.Blobs unless its bytes are there already,
// and reports whether it wrote them. The temp file goes either way.
func (s *Service) putBlob(st *staged) (created bool, err error) {
	defer st.discard()
	ok, err := s.Blobs.Has(st.id)
	if err != nil {
		return false, storageErr("stat", err)
	}
	if ok {
		return false, nil
	}
	if _, err := st.f.Seek(0, io.SeekStart); err != nil {
		return false, storageErr("rewind", err)
	}
	if err := s.Blobs.Put(st.id, st.f); err != nil {
		return false, storageErr("store", err)
	}
	return true, nil
}

// blobReader gives http.ServeContent a blob it can seek in: a seek only moves
// the offset; a read ahead of the stream skips forward, a read behind it opens
// the blob again. ServeContent seeks to the end and back before it reads, and
// once more per range, so a whole GET reads the blob once. The stream resumes
// by itself when it breaks (persistence.JetStreamBlobs): an error here is
// final, and the answer ends short of its Content-Length, never looking whole.
type blobReader struct {
	blobs Blobs
	id    string
	size  int64
	rc    io.ReadCloser // the stream, at offset at
	at    int64
	off   int64 // where the next read starts
}

var errSeek = errors.New("media: invalid seek")

func (r *blobReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errSeek
	}
	if offset < 0 {
		return 0, errSeek
	}
	r.off = offset
	return offset, nil
}

func (r *blobReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := r.readStream(p)
	switch {
	case r.off >= r.size:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF // the stream ended before size bytes
	}
	return n, err
}

// readStream reads at r.off from the open stream, opening or skipping first.
func (r *blobReader) readStream(p []byte) (int, error) {
	if r.rc == nil || r.at > r.off {
		r.drop()
		rc, _, err := r.blobs.Open(r.id)
		if err != nil {
			return 0, err
		}
		r.rc, r.at = rc, 0
	}
	if r.at < r.off {
		n, err := io.CopyN(io.Discard, r.rc, r.off-r.at)
		r.at += n
		if err != nil {
			return 0, err
		}
	}
	n, err := r.rc.Read(p[:min(int64(len(p)), r.size-r.off)])
	r.at += int64(n)
	r.off += int64(n)
	return n, err
}

// drop closes the stream, if any.
func (r *blobReader) drop() {
	if r.rc != nil {
		r.rc.Close()
		r.rc = nil
	}
}

func (r *blobReader) Close() error {
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}
