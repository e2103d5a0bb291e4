package transport

import (
	"net/http"
	"strconv"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// handleHistory answers GET /history?room=&before=&limit=[&v=2] with the page of
// stored messages just below `before` (newest page when absent), oldest first.
// Events are folded into the messages they act on: version 1 readers get the
// messages that are not recalled, as the original frames; version 2 readers
// get recalled ones as such, and each message's reactions. X-Last-Id is the
// room's last id at the moment of the read: every event up to it is in the page.
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	room := q.Get("room")
	if room == "" {
		room = protocol.DefaultRoom
	}
	if !protocol.ValidRoom(room) {
		apiError(w, http.StatusBadRequest, protocol.ErrBadRoom, "room must be 1-64 of A-Z a-z 0-9 _ -")
		return
	}
	v2, vOK := version(q.Get("v"))
	if !vOK {
		apiError(w, http.StatusBadRequest, "ERR_BAD_REQUEST", "v must be 1 or 2 (the protocol version)")
		return
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			apiError(w, http.StatusBadRequest, "ERR_BAD_REQUEST", "limit must be a positive whole number")
			return
		}
		limit = n
	}
	limit = min(limit, s.opts.HistoryLimit)
	before := uint64(1<<63 - 1)
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			apiError(w, http.StatusBadRequest, "ERR_BAD_REQUEST", "before must be a message id")
			return
		}
		before = n
	}
	base := s.baseURL(r)
	page, err := s.opts.Store.History(room, before, limit, persistence.HistoryQuery{UID: u.UID, Recalled: v2, Reactions: v2})
	if err != nil {
		s.log.Error("history read failed", "room", room, "err", err)
		apiError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable, "history is unavailable right now")
		return
	}
	b := make([]byte, 0, 64+len(page.Items)*256)
	b = append(b, '[')
	for i, m := range page.Items {
		if i > 0 {
			b = append(b, ',')
		}
		b = protocol.AppendHistoryItem(b, m.Data, protocol.StoredUID(m.Data) == u.UID, base, v2, m.Counts, m.Mine)
	}
	b = append(b, ']', '\n')
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Last-Id", strconv.FormatUint(page.LastID, 10))
	_, _ = w.Write(b)
}
