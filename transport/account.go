package transport

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/pandachat/pandachat/auth"
	"github.com/pandachat/pandachat/persistence"
)

// handleMe returns the caller's public profile.
func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, publicProfile(u, s.baseURL(r)))
}

// handleProfile sets nickName and/or avatarUrl; the next message carries them,
// stored messages keep what they were sent with.
func (s *Server) handleProfile(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	var body struct {
		NickName  *string `json:"nickName"`
		AvatarURL *string `json:"avatarUrl"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<10)).Decode(&body); err != nil {
		apiError(w, http.StatusBadRequest, "ERR_BAD_REQUEST", "body must be JSON {\"nickName\":..,\"avatarUrl\":..}")
		return
	}
	if body.NickName == nil && body.AvatarURL == nil {
		apiError(w, http.StatusBadRequest, "ERR_BAD_REQUEST", "give nickName, avatarUrl or both")
		return
	}
	base := s.baseURL(r)
	nick, avatar := u.Profile.NickName, u.Profile.AvatarURL
	if body.NickName != nil {
		n, err := auth.CleanNickName(*body.NickName)
		if err != nil {
			apiError(w, http.StatusBadRequest, "ERR_BAD_REQUEST", err.Error())
			return
		}
		nick = n
	}
	if body.AvatarURL != nil {
		a := strings.TrimSpace(*body.AvatarURL)
		switch {
		case a == auth.DefaultAvatarPath || a == base+auth.DefaultAvatarPath:
			avatar = auth.DefaultAvatarPath
		case s.opts.Media == nil:
			apiError(w, http.StatusBadRequest, "ERR_BAD_REQUEST", "avatarUrl: uploads are not enabled on this server")
			return
		default:
			abs, err := s.opts.Media.Resolve(a, base)
			if err != nil {
				apiError(w, http.StatusBadRequest, "ERR_BAD_REQUEST", "avatarUrl must be a media URL of this server: "+err.Error())
				return
			}
			avatar = strings.TrimPrefix(abs, base) // ours: a path, absolute per reader
		}
	}
	// Changed in place: a login from another device meanwhile (its profile,
	// its unionId) is kept, except for the fields this request sets.
	uid := u.UID
	u, err := s.opts.Store.EditUser(uid, func(x *persistence.User) {
		if body.NickName != nil {
			x.Profile.NickName = nick
		}
		if body.AvatarURL != nil {
			x.Profile.AvatarURL = avatar
		}
	})
	if err != nil {
		s.log.Error("profile update failed", "uid", uid, "err", err)
		apiError(w, http.StatusInternalServerError, "ERR_STORAGE", "could not save the profile")
		return
	}
	s.opts.Hub.ProfileChanged(u.UID, u.Profile.NickName, u.Profile.AvatarURL) // before the answer: the next message carries it
	writeJSON(w, http.StatusOK, publicProfile(u, base))
}
