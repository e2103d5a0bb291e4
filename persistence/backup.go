package persistence

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// A backup archive is a tar stream, in this order:
//
//	pandachat-backup.json   manifest (format, time, store version)
//	store.bak               Badger's streaming backup (DB.Backup) of the whole store
//	media/<2 hex>/<62 hex>  every media file, by the same path as under the data directory
//
// The store is read first and the media after: media bytes are written before
// their metadata and never deleted, so every file the store's snapshot names is
// in the archive (a few newer ones may be too; they are harmless).
const (
	backupManifest = "pandachat-backup.json"
	backupStore    = "store.bak"
	backupMedia    = "media/"
	backupFormat   = 1
)

// BackupManifest describes an archive.
type BackupManifest struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	Version uint64    `json:"storeVersion"` // Badger version of the newest entry backed up
	Media   int       `json:"media,omitempty"`
}

// WriteBackup writes an archive of the open store and the media directory to w.
// It runs beside live traffic and reads the store at one moment; tmpDir holds
// the store backup while it is written, because a tar entry needs its size first.
func WriteBackup(w io.Writer, s *Badger, mediaDir, tmpDir string) (BackupManifest, error) {
	man := BackupManifest{Format: backupFormat, Created: time.Now().UTC()}
	tmp, err := os.CreateTemp(tmpDir, ".backup-*.tmp")
	if err != nil {
		return man, fmt.Errorf("backup: temp file: %w", err)
	}
	defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
	// One reader: Badger's stream opens a read transaction per goroutine, each
	// when it starts, so several would each see their own moment (a recall in
	// the archive without the rewrite of its target, or the other way round).
	stream := s.db.NewStream()
	stream.NumGo = 1
	stream.LogPrefix = "pandachat backup"
	if man.Version, err = stream.Backup(tmp, 0); err != nil {
		return man, fmt.Errorf("backup: store: %w", err)
	}
	files, err := mediaFiles(mediaDir)
	if err != nil {
		return man, fmt.Errorf("backup: media: %w", err)
	}
	man.Media = len(files)

	tw := tar.NewWriter(w)
	mb, _ := json.MarshalIndent(man, "", "  ")
	if err := writeEntry(tw, backupManifest, man.Created, int64(len(mb)), strings.NewReader(string(mb))); err != nil {
		return man, err
	}
	size, err := tmp.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		return man, fmt.Errorf("backup: store: %w", err)
	}
	if err := writeEntry(tw, backupStore, man.Created, size, tmp); err != nil {
		return man, err
	}
	for _, rel := range files {
		if err := copyMedia(tw, mediaDir, rel); err != nil {
			return man, err
		}
	}
	if err := tw.Close(); err != nil {
		return man, fmt.Errorf("backup: %w", err)
	}
	return man, nil
}

// mediaFiles lists the stored media as slash paths "ab/cdef…", skipping the
// upload staging directory and anything that is not a media file.
func mediaFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return fs.SkipAll // no upload yet
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "tmp" {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && validMediaPath(rel) {
			out = append(out, rel)
		}
		return nil
	})
	return out, err
}

// validMediaPath accepts only "<2 hex>/<62 hex>": the names media files get.
// Restore relies on it to write nothing outside the media directory.
func validMediaPath(rel string) bool {
	dir, name, ok := strings.Cut(rel, "/")
	return ok && len(dir) == 2 && len(name) == 62 && isLowerHex(dir) && isLowerHex(name)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func copyMedia(tw *tar.Writer, dir, rel string) error {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return fmt.Errorf("backup: media: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup: media: %w", err)
	}
	return writeEntry(tw, backupMedia+rel, st.ModTime(), st.Size(), f)
}

func writeEntry(tw *tar.Writer, name string, mod time.Time, size int64, r io.Reader) error {
	hdr := &tar.Header{Name: name, Mode: 0o640, Size: size, ModTime: mod, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	n, err := io.Copy(tw, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("%d of %d bytes", n, size)
	}
	if err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	return nil
}

// RestoreBackup reads an archive from r into a new store at storeDir and media
// files under mediaDir. Both must be missing or empty: a restore never merges.
func RestoreBackup(r io.Reader, storeDir, mediaDir string) (BackupManifest, error) {
	var man BackupManifest
	for _, d := range []string{storeDir, mediaDir} {
		if err := emptyDir(d); err != nil {
			return man, err
		}
	}
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != backupManifest {
		return man, errors.New("restore: not a pandachat backup (no manifest first)")
	}
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&man); err != nil {
		return man, fmt.Errorf("restore: manifest: %w", err)
	}
	if man.Format != backupFormat {
		return man, fmt.Errorf("restore: backup format %d; this version reads format %d", man.Format, backupFormat)
	}
	hdr, err = tr.Next()
	if err != nil || hdr.Name != backupStore {
		return man, errors.New("restore: archive has no store.bak after the manifest")
	}
	s, err := OpenBadger(storeDir, Options{})
	if err != nil {
		return man, err
	}
	if err := s.db.Load(tr, 256); err != nil {
		s.Close()
		return man, fmt.Errorf("restore: store: %w", err)
	}
	if err := s.Sync(); err != nil {
		s.Close()
		return man, fmt.Errorf("restore: store: %w", err)
	}
	if err := s.Close(); err != nil {
		return man, fmt.Errorf("restore: store: %w", err)
	}
	n := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return man, fmt.Errorf("restore: %w", err)
		}
		rel, ok := strings.CutPrefix(path.Clean(hdr.Name), backupMedia)
		if hdr.Typeflag != tar.TypeReg || !ok || !validMediaPath(rel) {
			return man, fmt.Errorf("restore: unexpected entry %q", hdr.Name)
		}
		if err := restoreMedia(tr, mediaDir, rel, hdr.Size); err != nil {
			return man, err
		}
		n++
	}
	if n != man.Media {
		return man, fmt.Errorf("restore: archive has %d media files, manifest says %d (truncated?)", n, man.Media)
	}
	return man, nil
}

func restoreMedia(r io.Reader, dir, rel string, size int64) error {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return fmt.Errorf("restore: media: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("restore: media: %w", err)
	}
	n, err := io.Copy(f, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s: %d of %d bytes", rel, n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore: media: %w", err)
	}
	return nil
}

// emptyDir accepts a directory that does not exist or has nothing in it.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("restore: %s is not empty; restore only into a new or empty directory", dir)
	}
	return nil
}
