package transport

import (
	"net/http"
	"strconv"

	"github.com/pandachat/pandachat/protocol"
)

// handleHistory answers GET /history?room=&before=&limit= with the page of
// stored messages just below `before` (newest page when absent), oldest first.
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
	msgs, err := s.opts.Store.MessagesBefore(room, before, limit)
	if err != nil {
		s.log.Error("history read failed", "room", room, "err", err)
		apiError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable, "history is unavailable right now")
		return
	}
	b := make([]byte, 0, 64+len(msgs)*256)
	b = append(b, '[')
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = protocol.AppendChat(b, m.Data, protocol.StoredUID(m.Data) == u.UID, nil, base)
	}
	b = append(b, ']', '\n')
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
