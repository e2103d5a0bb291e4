package transport

import (
	"context"
	"errors"
	"net/http"

	"github.com/pandachat/pandachat/auth"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

// paramTicket is the /ws query parameter that carries a one-time ticket.
const paramTicket = "ticket"

// handleLogout ends the caller's session: the store forgets it, and every
// open socket of it gets the invalid-session frame and close 1008.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := s.authSession(w, r)
	if !ok {
		return
	}
	if err := s.opts.Auth.Logout(sess.ID); err != nil {
		s.log.Error("logout failed", "uid", u.UID, "err", err)
		apiError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable, "session store unavailable; try again")
		return
	}
	s.opts.Hub.EndSession(sess.ID)
	s.log.Info("logged out", "uid", u.UID)
	writeJSON(w, http.StatusOK, map[string]any{"code": 0})
}

// handleTicket issues a one-time ticket that opens /ws?ticket=.. in place of
// the caller's id/skey, so that the skey never appears in a URL.
func (s *Server) handleTicket(w http.ResponseWriter, r *http.Request) {
	sess, u, ok := s.authSession(w, r)
	if !ok {
		return
	}
	t, err := s.opts.Auth.IssueTicket(sess)
	if err != nil {
		s.log.Error("ticket not stored", "uid", u.UID, "err", err)
		apiError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable, "session store unavailable; try again")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ticket": t.ID, "expiresIn": int(auth.TicketTTL.Seconds())})
}

// wsSession is the session and user a WebSocket request stands for: its
// ticket when it has one (used up here), else its id/skey pair.
func (s *Server) wsSession(r *http.Request) (persistence.Session, persistence.User, error) {
	if t := r.URL.Query().Get(paramTicket); t != "" {
		return s.opts.Auth.CheckTicket(t)
	}
	return s.opts.Auth.Check(Param(r, paramID), Param(r, paramSkey))
}

// postOnly answers 405 to any other method (a bare "POST /x" pattern would
// let the web client's catch-all answer 404 instead).
func postOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			apiError(w, http.StatusMethodNotAllowed, "ERR_METHOD_NOT_ALLOWED", "use POST")
			return
		}
		h(w, r)
	}
}

// authSession checks the request's id/skey for the JSON API routes. On a
// refusal it has answered: 401 for a bad session, 503 when the store fails
// (the client keeps its session and tries again later).
func (s *Server) authSession(w http.ResponseWriter, r *http.Request) (persistence.Session, persistence.User, bool) {
	sess, u, err := s.opts.Auth.Check(Param(r, paramID), Param(r, paramSkey))
	if err == nil {
		return sess, u, true
	}
	if errors.Is(err, auth.ErrInvalidSession) {
		waferError(w, http.StatusUnauthorized, protocol.ErrInvalidSession, "session is invalid or expired; log in again")
	} else {
		s.log.Error("session check failed", "err", err)
		apiError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable, "session store unavailable; try again")
	}
	return persistence.Session{}, persistence.User{}, false
}

// authenticate is authSession for routes that need only the user.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (persistence.User, bool) {
	_, u, ok := s.authSession(w, r)
	return u, ok
}

type uidKey struct{}

// checkedUpload runs the session check of an upload before the media
// service: a store that fails answers 503 here (media's check can only say
// yes or no, which would be a 401 and a needless new login). A good session's
// uid rides in the request context to UserID.
func (s *Server) checkedUpload(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			_, u, err := s.opts.Auth.Check(Param(r, paramID), Param(r, paramSkey))
			switch {
			case err == nil:
				r = r.WithContext(context.WithValue(r.Context(), uidKey{}, u.UID))
			case !errors.Is(err, auth.ErrInvalidSession):
				s.log.Error("session check failed", "err", err)
				apiError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable, "session store unavailable; try again")
				return
			}
		}
		next(w, r)
	}
}

// UserID is the session check media uploads use.
func (s *Server) UserID(r *http.Request) (string, bool) {
	if uid, ok := r.Context().Value(uidKey{}).(string); ok {
		return uid, true
	}
	_, u, err := s.opts.Auth.Check(Param(r, paramID), Param(r, paramSkey))
	return u.UID, err == nil
}
