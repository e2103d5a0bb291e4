package media

import (
	"encoding/json"
	"errors"
	"net/http"
	"syscall"

	"github.com/pandachat/pandachat/persistence"
)

var (
	// ErrUnsupported is returned for bytes that are not a well-formed JPEG, PNG, GIF or WebP.
	ErrUnsupported = errors.New("media: not a supported image")
	// ErrBadURL is returned by Resolve for a URL that may not appear in a message.
	ErrBadURL = errors.New("media: bad url")

	errTooLarge    = errors.New("media: file too large")
	errStorageFull = errors.New("media: storage full")
)

// Error codes of the JSON error bodies, as in the wire contract.
const (
	codeInvalidSession = "ERR_INVALID_SESSION"
	codeBadRequest     = "ERR_BAD_REQUEST"
	codeMethod         = "ERR_METHOD_NOT_ALLOWED"
	codeTooLarge       = "ERR_TOO_LARGE"
	codeUnsupported    = "ERR_UNSUPPORTED_MEDIA"
	codeStorageFull    = "ERR_STORAGE_FULL"
	codeStorage        = "ERR_STORAGE"
	codeNotFound       = "ERR_NOT_FOUND"
)

// waferMagic marks session errors; the original client SDK logs in again when it sees it.
const waferMagic = "F2C224D4-2BCE-4C64-AF9F-A6D872000D1A"

// diskFull reports whether err means the disk or the user's quota is exhausted.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, errStorageFull) ||
		errors.Is(err, persistence.ErrFull)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client is gone if this fails
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	body := map[string]any{"error": code, "message": msg}
	if code == codeInvalidSession {
		body[waferMagic] = 1
	}
	writeJSON(w, status, body)
}
