package media

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// formSlack is the room a body may take beyond the file: multipart framing and
// small fields such as wx.uploadFile's formData.
const formSlack = 64 << 10

var errNoFile = errors.New(`no "file" field`)

// uploadResult is the answer to a successful upload.
type uploadResult struct {
	URL    string `json:"url"`
	ID     string `json:"id"`
	MIME   string `json:"mime"`
	Size   int64  `json:"size"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// ServeUpload handles POST /upload: one image in the multipart field "file", as
// wx.uploadFile sends it. The part is streamed to disk, never held in memory; a
// refused upload leaves neither bytes nor metadata behind.
func (s *Service) ServeUpload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, codeMethod, "use POST")
		return
	}
	var uid string
	ok := false
	if s.Authenticate != nil {
		uid, ok = s.Authenticate(r)
	}
	if !ok {
		writeError(w, http.StatusUnauthorized, codeInvalidSession, "invalid or expired session")
		return
	}
	limit := s.maxBytes()
	if r.ContentLength > limit+formSlack { // refuse before reading a byte
		s.fail(w, errTooLarge)
		return
	}
	if s.Meta == nil {
		s.fail(w, storageErr("metadata", errors.New("no metadata store")))
		return
	}
	if err := s.Open(); err != nil {
		s.fail(w, err)
		return
	}
	// Hold room for the file before reading it: the body's length less the form's
	// framing is the least it can be; a body of unknown length may be the limit.
	size, need := limit, int64(1)
	if r.ContentLength >= 0 {
		size = min(max(r.ContentLength-formSlack, 1), limit)
		need = size
	}
	h, err := s.admit(uid, size, need)
	if err != nil {
		s.fail(w, err)
		return
	}
	defer s.release(h)
	r.Body = http.MaxBytesReader(w, r.Body, limit+formSlack)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "want a multipart/form-data body: "+err.Error())
		return
	}
	part, err := filePart(mr)
	if err != nil {
		s.fail(w, err)
		return
	}
	st, err := s.files().stage(part, limit)
	if err != nil {
		s.fail(w, err)
		return
	}
	in, err := Probe(st.f, st.size)
	if err != nil {
		st.discard()
		if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrImageTooLarge) {
			err = storageErr("read", err)
		}
		s.fail(w, err)
		return
	}
	if err := s.settle(h, st.size); err != nil {
		st.discard()
		s.fail(w, err)
		return
	}
	m, err := s.commit(uid, st, in)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.record(h)
	if s.OnUpload != nil {
		s.OnUpload(st.size)
	}
	writeJSON(w, http.StatusOK, uploadResult{
		URL: s.BaseURL(r) + "/media/" + m.ID, ID: m.ID, MIME: m.MIME,
		Size: m.Size, Width: m.Width, Height: m.Height,
	})
}

// filePart skips the form fields before "file" and returns that part.
func filePart(mr *multipart.Reader) (*multipart.Part, error) {
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, errNoFile
		}
		if err != nil {
			return nil, err
		}
		if p.FormName() == "file" {
			return p, nil
		}
		if _, err := io.Copy(io.Discard, p); err != nil { // bounded by the body limit
			return nil, err
		}
	}
}

// commit puts the staged bytes at their address and records their metadata. The first
// uploader stays the owner when the same bytes come again.
func (s *Service) commit(uid string, st *staged, in Info) (persistence.Media, error) {
	mu := s.lock(st.id)
	mu.Lock()
	defer mu.Unlock()
	old, err := s.Meta.Media(st.id)
	known := err == nil
	if err != nil && !errors.Is(err, persistence.ErrNotFound) {
		st.discard()
		return persistence.Media{}, storageErr("metadata", err)
	}
	remove := s.files().remove
	if s.Blobs != nil {
		created, err := s.putBlob(st)
		if err != nil {
			return persistence.Media{}, err
		}
		remove = func(id string) error {
			if !created { // another upload stored them; it may be using them
				return nil
			}
			return s.Blobs.Delete(id)
		}
	} else if _, err := s.files().commit(st); err != nil {
		return persistence.Media{}, err
	}
	if known {
		return old, nil
	}
	m := persistence.Media{
		ID: st.id, Owner: uid, MIME: in.MIME, Size: st.size,
		Width: in.Width, Height: in.Height, Created: s.now().UTC(),
	}
	if err := s.Meta.PutMedia(m); err != nil {
		remove(st.id) // without metadata nobody can reach these bytes
		return persistence.Media{}, storageErr("metadata", err)
	}
	return m, nil
}

// fail answers err with the status and code of the wire contract.
func (s *Service) fail(w http.ResponseWriter, err error) {
	var (
		tooBig *http.MaxBytesError
		quota  *quotaError
		low    *lowDiskError
	)
	switch {
	case errors.Is(err, errTooLarge), errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("file larger than %d bytes", s.maxBytes()))
	case errors.Is(err, ErrImageTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, strings.TrimPrefix(err.Error(), "media: "))
	case errors.As(err, &quota):
		if quota.retry > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(quota.retry/time.Second)))
		}
		writeError(w, http.StatusTooManyRequests, protocol.ErrQuota, quota.msg)
	case errors.As(err, &low):
		slog.Warn("media: upload refused, the disk is short of space", "err", err)
		writeError(w, http.StatusInsufficientStorage, codeStorageFull, "the server is short of disk space: uploads are paused, chat goes on")
	case diskFull(err):
		slog.Error("media: storage full", "err", err)
		writeError(w, http.StatusInsufficientStorage, codeStorageFull, "no space left for media")
	case errors.Is(err, errStorage):
		slog.Error("media: storage failure", "err", err)
		writeError(w, http.StatusInternalServerError, codeStorage, "could not store the file")
	case errors.Is(err, ErrUnsupported):
		writeError(w, http.StatusUnsupportedMediaType, codeUnsupported, "only JPEG, PNG, GIF and WebP images: "+err.Error())
	case errors.Is(err, errNoFile):
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
	default:
		writeError(w, http.StatusBadRequest, codeBadRequest, "malformed multipart body: "+err.Error())
	}
}
