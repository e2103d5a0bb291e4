package media

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// errStorage marks failures of the disk rather than of the request.
var errStorage = errors.New("media: storage")

func storageErr(op string, err error) error { return fmt.Errorf("%w: %s: %w", errStorage, op, err) }

// validID reports whether id is a lowercase hex SHA-256, the only names files ever get.
func validID(id string) bool {
	if len(id) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// files keeps bytes at <dir>/<id[:2]>/<id[2:]>; uploads are staged in <dir>/tmp,
// on the same file system, so that moving them into place is one atomic rename.
type files struct {
	dir  string
	wrap func(io.Writer) io.Writer // nil writes straight to the temp file
}

func (f files) path(id string) string { return filepath.Join(f.dir, id[:2], id[2:]) }
func (f files) tmp() string           { return filepath.Join(f.dir, "tmp") }

// open creates the directories, removes what an interrupted run left in tmp and
// checks that new files can be written.
func (f files) open() error {
	if err := os.MkdirAll(f.tmp(), 0o750); err != nil {
		return storageErr("create directory", err)
	}
	ents, err := os.ReadDir(f.tmp())
	if err != nil {
		return storageErr("read tmp", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(f.tmp(), e.Name())); err != nil {
			return storageErr("clean tmp", err)
		}
	}
	t, err := os.CreateTemp(f.tmp(), "check-*")
	if err != nil {
		return storageErr("write", err)
	}
	t.Close()
	if err := os.Remove(t.Name()); err != nil {
		return storageErr("write", err)
	}
	return nil
}

// staged is an upload sitting in tmp, hashed and counted while it was written.
type staged struct {
	f    *os.File
	id   string
	size int64
}

// discard closes and removes the temp file.
func (s *staged) discard() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// stage streams r into a temp file in fixed-size pieces, so memory does not grow with the
// upload. More than limit bytes gives errTooLarge; read errors come back as they are, disk
// errors wrapped in errStorage. On error nothing is left behind.
func (f files) stage(r io.Reader, limit int64) (_ *staged, err error) {
	t, err := os.CreateTemp(f.tmp(), "upload-*")
	if err != nil {
		return nil, storageErr("create temp file", err)
	}
	s := &staged{f: t}
	defer func() {
		if err != nil {
			s.discard()
		}
	}()
	var w io.Writer = t
	if f.wrap != nil {
		w = f.wrap(t)
	}
	h := sha256.New()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if s.size += int64(n); s.size > limit {
				return nil, errTooLarge // stop reading at the limit
			}
			h.Write(buf[:n])
			if _, err := w.Write(buf[:n]); err != nil {
				return nil, storageErr("write", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
	}
	s.id = hex.EncodeToString(h.Sum(nil))
	return s, nil
}

// commit moves s to its content address and reports whether it created the file;
// when the same bytes are already stored it only drops the temp file.
func (f files) commit(s *staged) (created bool, err error) {
	dst := f.path(s.id)
	if _, err := os.Lstat(dst); err == nil {
		s.discard()
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		s.discard()
		return false, storageErr("stat", err)
	}
	if err := s.f.Sync(); err != nil { // the bytes must be on disk before the name is
		s.discard()
		return false, storageErr("sync", err)
	}
	if err := s.f.Close(); err != nil {
		os.Remove(s.f.Name())
		return false, storageErr("close", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		os.Remove(s.f.Name())
		return false, storageErr("create directory", err)
	}
	if err := os.Rename(s.f.Name(), dst); err != nil {
		os.Remove(s.f.Name())
		return false, storageErr("rename", err)
	}
	syncDir(filepath.Dir(dst))
	return true, nil
}

// syncDir makes a rename durable; best effort, as not every system can sync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func (f files) remove(id string) error { return os.Remove(f.path(id)) }

func (f files) read(id string) (*os.File, error) { return os.Open(f.path(id)) }
