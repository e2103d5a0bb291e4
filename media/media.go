// Package media stores uploaded images by their content and serves them back.
//
// Bytes live on disk under Service.Dir, named by the lowercase hex SHA-256 of
// their content, or in Service.Blobs when several nodes serve them; metadata
// lives in a MetaStore (the server's persistence.Store).
package media

import (
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/pandachat/pandachat/persistence"
)

// DefaultMaxBytes is the upload limit when Service.MaxBytes is zero.
const DefaultMaxBytes = 10 << 20

// MetaStore keeps media metadata and what each user uploaded; persistence.Store satisfies it.
type MetaStore interface {
	PutMedia(m persistence.Media) error
	Media(id string) (persistence.Media, error) // persistence.ErrNotFound when unknown
	AddUpload(uid string, at time.Time, n int64, forget time.Time) error
	Uploads(uid string, since time.Time) ([]persistence.Upload, error)
}

var _ MetaStore = persistence.Store(nil)

// Service handles uploads and serves stored media. Dir and Meta are required;
// every other zero field means its default. A Service must not be copied after first use.
type Service struct {
	Dir          string                                      // where bytes live (created if missing)
	Meta         MetaStore                                   // media metadata
	MaxBytes     int64                                       // largest accepted file; 0 means DefaultMaxBytes
	Authenticate func(r *http.Request) (uid string, ok bool) // nil refuses every upload
	PublicURL    string                                      // base of media URLs, e.g. "https://chat.example.com"
	TrustProxy   bool                                        // honour X-Forwarded-Proto / X-Forwarded-Host when PublicURL is empty
	AllowedHosts []string                                    // extra https hosts whose URLs gallery messages may use
	Now          func() time.Time                            // default time.Now
	OnUpload     func(size int64)                            // told of each accepted upload (metrics); may be nil
	Quota        Quota                                       // bytes per user per rolling window; zero means 200MiB/24h
	MinFreeDisk  int64                                       // uploads stop below this much free space on Dir's disk (and BlobsDir's); 0 means 1GiB, negative none
	Blobs        Blobs                                       // where bytes live when set; Dir then only stages uploads
	BlobsDir     string                                      // the directory Blobs keep their bytes in, if local: checked against MinFreeDisk too

	mu    sync.Mutex     // guards ready
	ready bool           // Open succeeded
	locks [16]sync.Mutex // commits of one id are serialised, so a failed commit cannot delete a file another just claimed

	qmu     sync.Mutex       // guards held and heldAll; admission checks run under it
	held    map[string]int64 // bytes reserved by uploads in flight, by uid
	heldAll int64            // their sum

	diskWarn sync.Once // free space unknown: said once

	wrapTmp func(io.Writer) io.Writer // tests route temp-file writes elsewhere to inject disk errors
}

// Open creates Dir and removes temp files left by an earlier run. ServeUpload calls
// it on first use; calling it at start-up reports an unusable directory early.
func (s *Service) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready {
		return nil
	}
	if s.Dir == "" {
		return errors.New("media: no directory")
	}
	if err := s.files().open(); err != nil {
		return err
	}
	s.ready = true
	return nil
}

func (s *Service) files() files { return files{dir: filepath.Clean(s.Dir), wrap: s.wrapTmp} }

func (s *Service) maxBytes() int64 {
	if s.MaxBytes > 0 {
		return s.MaxBytes
	}
	return DefaultMaxBytes
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// lock serialises work on one id; ids are hex, so their first digit picks a stripe.
func (s *Service) lock(id string) *sync.Mutex {
	c := id[0]
	if c >= 'a' {
		return &s.locks[c-'a'+10]
	}
	return &s.locks[c-'0']
}
