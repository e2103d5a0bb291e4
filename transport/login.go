package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/pandachat/pandachat/auth"
	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
	"github.com/pandachat/pandachat/wechat"
)

// handleLogin is wafer's login: a valid id/skey pair is confirmed; otherwise a
// wx.login code (with optional encrypted profile) makes a new session.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		waferError(w, http.StatusMethodNotAllowed, protocol.ErrLoginFailed, "use GET or POST")
		return
	}
	id, skey, code := Param(r, paramID), Param(r, paramSkey), Param(r, paramCode)
	if id != "" || skey != "" {
		_, u, err := s.opts.Auth.Check(id, skey)
		switch {
		case err == nil:
			s.opts.Observer.Login("check", "ok")
			writeJSON(w, http.StatusOK, map[string]any{"code": 0, "message": "session valid", "userInfo": publicProfile(u, s.baseURL(r))})
			return
		case code == "": // a stale session with a fresh code simply logs in again
			if errors.Is(err, auth.ErrInvalidSession) {
				s.opts.Observer.Login("check", "refused")
				waferError(w, http.StatusUnauthorized, protocol.ErrInvalidSession, "session is invalid or expired; log in again")
			} else {
				s.opts.Observer.Login("check", "unavailable")
				s.log.Error("session check failed", "err", err)
				waferError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable, "session store unavailable; try again")
			}
			return
		}
	}
	if code == "" {
		s.opts.Observer.Login("code", "bad_request")
		waferError(w, http.StatusBadRequest, protocol.ErrLoginFailed, "missing X-WX-Code")
		return
	}
	select {
	case s.codeLogins <- struct{}{}:
		defer func() { <-s.codeLogins }()
	default:
		s.opts.Observer.Login("code", "busy")
		w.Header().Set("Retry-After", "1")
		waferError(w, http.StatusServiceUnavailable, protocol.ErrLoginFailed, "too many logins at once; try again in a second")
		return
	}
	sess, u, err := s.opts.Auth.LoginCode(r.Context(), code, Param(r, paramEncryptedData), Param(r, paramIV))
	if err != nil {
		var we *wechat.Error
		switch {
		case errors.As(err, &we) && we.Refused:
			s.opts.Observer.Login("code", "refused")
			s.log.Info("login refused", "why", we.Msg, "remote", r.RemoteAddr)
			waferError(w, http.StatusUnauthorized, protocol.ErrLoginFailed, we.Msg)
		case errors.As(err, &we):
			s.opts.Observer.Login("code", "unavailable")
			s.log.Warn("login failed: WeChat unavailable", "why", we.Msg)
			waferError(w, http.StatusBadGateway, protocol.ErrLoginFailed, we.Msg)
		default:
			s.opts.Observer.Login("code", "unavailable")
			s.log.Error("login failed", "err", err)
			waferError(w, http.StatusInternalServerError, protocol.ErrLoginFailed, "could not store the session")
		}
		return
	}
	s.opts.Observer.Login("code", "ok")
	s.opts.Hub.ProfileChanged(u.UID, u.Profile.NickName, u.Profile.AvatarURL) // the old flow may bring a new profile
	s.loginAnswer(w, r, sess, u)
}

func (s *Server) loginAnswer(w http.ResponseWriter, r *http.Request, sess persistence.Session, u persistence.User) {
	writeJSON(w, http.StatusOK, map[string]any{
		protocol.Magic: 1,
		"session":      map[string]string{"id": sess.ID, "skey": sess.Skey},
		"userInfo":     publicProfile(u, s.baseURL(r)),
	})
}

// handleDevLogin makes a session from a nickname alone, for browsers and local use.
func (s *Server) handleDevLogin(w http.ResponseWriter, r *http.Request) {
	if !s.opts.DevLogin {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		waferError(w, http.StatusMethodNotAllowed, protocol.ErrLoginFailed, "use POST with {\"nickName\":\"...\"}")
		return
	}
	if s.devLogins != nil { // every dev login makes a user: a burst per address, then a trickle
		if ok, wait := s.devLogins.allow(addrKey(s.clientAddr(r))); !ok {
			secs := int((wait + time.Second - 1) / time.Second)
			s.opts.Observer.Login("dev", "throttled")
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			waferError(w, http.StatusTooManyRequests, protocol.ErrRateLimited,
				fmt.Sprintf("too many dev logins from this address; try again in %d s", secs))
			return
		}
	}
	var body struct {
		NickName string `json:"nickName"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&body); err != nil {
		s.opts.Observer.Login("dev", "bad_request")
		waferError(w, http.StatusBadRequest, protocol.ErrLoginFailed, "body must be JSON {\"nickName\":\"...\"}")
		return
	}
	sess, u, err := s.opts.Auth.LoginDev(body.NickName)
	if errors.Is(err, auth.ErrBadNickName) {
		s.opts.Observer.Login("dev", "bad_request")
		waferError(w, http.StatusBadRequest, protocol.ErrLoginFailed, err.Error())
		return
	}
	if err != nil {
		s.opts.Observer.Login("dev", "unavailable")
		s.log.Error("dev login failed", "err", err)
		waferError(w, http.StatusInternalServerError, protocol.ErrLoginFailed, "could not store the session")
		return
	}
	s.opts.Observer.Login("dev", "ok")
	s.loginAnswer(w, r, sess, u)
}
