package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// Unread counting: how far a room's history is read past a user's read
// position, and the most unread messages counted (100 means "100 or more").
const (
	maxUnreadScan = 400
	maxUnread     = 100
	maxRooms      = persistence.MaxReadRooms // rooms listed by GET /rooms
)

// roomState is one room of GET /rooms.
type roomState struct {
	Room     string `json:"room"`
	LastID   uint64 `json:"lastId"`
	ReadID   uint64 `json:"readId"`
	Unread   int    `json:"unread"`
	Mentions int    `json:"mentions"`
}

// handleRooms answers GET /rooms: the rooms the caller has joined (posting
// needs a join), by name, each with its last id and the caller's read
// position, the highest id the server delivered to any of the caller's
// connections. A room where the caller has a connection open now is read up
// to its last id. unread counts the others' messages (not events, not
// recalled ones) after the read position, mentions those of them that mention
// the caller.
func (s *Server) handleRooms(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	positions, err := s.opts.Store.ReadPositions(u.UID)
	if err != nil {
		s.unreadError(w, err)
		return
	}
	positions = positions[:min(len(positions), maxRooms)]
	live, err := s.opts.Hub.LiveRooms(u.UID)
	if err != nil {
		s.log.Warn("live rooms unknown; read positions as stored", "err", err)
	}
	out := make([]roomState, 0, len(positions))
	for _, p := range positions {
		last, err := s.opts.Store.LastID(p.Room)
		if err != nil {
			s.unreadError(w, err)
			return
		}
		st := roomState{Room: p.Room, LastID: last, ReadID: min(p.ID, last)}
		if live[p.Room] {
			st.ReadID = last
		}
		if st.ReadID < last {
			msgs, err := s.opts.Store.MessagesAfter(p.Room, st.ReadID, maxUnreadScan)
			if err != nil {
				s.unreadError(w, err)
				return
			}
			for _, m := range msgs {
				if st.Unread == maxUnread {
					break
				}
				if protocol.StoredEvent(m.Data) || protocol.StoredRecalled(m.Data) || protocol.StoredUID(m.Data) == u.UID {
					continue
				}
				st.Unread++
				if protocol.StoredMentions(m.Data, u.UID) {
					st.Mentions++
				}
			}
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleRead answers POST /read {"room":..,"id":..}: the caller's read position
// in room moves forward to id (never back, and never past the room's last id).
func (s *Server) handleRead(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	var body struct {
		Room *string `json:"room"`
		ID   *uint64 `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&body); err != nil || body.Room == nil || body.ID == nil {
		apiError(w, http.StatusBadRequest, "ERR_BAD_REQUEST", `body must be JSON {"room":"..","id":<message id>}`)
		return
	}
	if !protocol.ValidRoom(*body.Room) {
		apiError(w, http.StatusBadRequest, protocol.ErrBadRoom, "room must be 1-64 of A-Z a-z 0-9 _ -")
		return
	}
	last, err := s.opts.Store.LastID(*body.Room)
	if err != nil {
		s.unreadError(w, err)
		return
	}
	mark := persistence.ReadMark{UID: u.UID, Room: *body.Room, ID: min(*body.ID, last)}
	if err := s.opts.Store.MarkRead([]persistence.ReadMark{mark}); err != nil {
		s.unreadError(w, err)
		return
	}
	id, err := s.opts.Store.ReadPosition(u.UID, mark.Room)
	if errors.Is(err, persistence.ErrNotFound) { // the store left it out
		apiError(w, http.StatusConflict, "ERR_TOO_MANY_ROOMS", fmt.Sprintf("a user has read positions in at most %d rooms", persistence.MaxReadRooms))
		return
	}
	if err != nil {
		s.unreadError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"room": mark.Room, "readId": id})
}

func (s *Server) unreadError(w http.ResponseWriter, err error) {
	if errors.Is(err, persistence.ErrUnsupported) {
		apiError(w, http.StatusNotImplemented, "ERR_NOT_SUPPORTED", "unread counts are not available with this store")
		return
	}
	s.log.Error("read positions unavailable", "err", err)
	apiError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable, "read positions are unavailable right now")
}
