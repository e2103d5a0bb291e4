package media

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/pandachat/pandachat/persistence"
)

// mediaCSP keeps a stored file inert even if a browser opens it as a page.
const mediaCSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"

// ServeMedia handles GET and HEAD /media/{id}. It reads the id from the pattern
// wildcard "id" when the mux has one, else from the path after "/media/".
// Anything but a known 64-hex id is 404, so no path can escape Dir.
func (s *Service) ServeMedia(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, codeMethod, "use GET or HEAD")
		return
	}
	id := r.PathValue("id")
	if id == "" {
		id = strings.TrimPrefix(r.URL.Path, "/media/")
	}
	if !validID(id) || s.Meta == nil {
		writeError(w, http.StatusNotFound, codeNotFound, "no such media")
		return
	}
	m, err := s.Meta.Media(id)
	if errors.Is(err, persistence.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeNotFound, "no such media")
		return
	}
	if err != nil {
		s.fail(w, storageErr("metadata", err))
		return
	}
	f, err := s.open(id)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, persistence.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeNotFound, "no such media")
		return
	}
	if err != nil {
		s.fail(w, storageErr("open", err))
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", contentType(m.MIME))
	h.Set("ETag", `"`+id+`"`) // strong: the id is the hash of the bytes
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", mediaCSP)
	http.ServeContent(w, r, "", m.Created, f)
}

// open finds id's bytes in Blobs when the service has them, else on disk.
func (s *Service) open(id string) (io.ReadSeekCloser, error) {
	if s.Blobs == nil {
		f, err := s.files().read(id)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	rc, size, err := s.Blobs.Open(id)
	if err != nil {
		return nil, err
	}
	return &blobReader{blobs: s.Blobs, id: id, size: size, rc: rc}, nil
}

// contentType passes only the types Probe produces, so odd metadata cannot make a page.
func contentType(mime string) string {
	switch mime {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
		return mime
	}
	return "application/octet-stream"
}
