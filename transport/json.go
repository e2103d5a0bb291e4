package transport

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/protocol"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// wafer answers carry the magic key the original client SDK looks for.
func waferError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{protocol.Magic: 1, "error": code, "message": message})
}

// apiError is the shape of every non-login error answer.
func apiError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": code, "message": message})
}

// publicProfile is what others may see of a user: never openId, unionId or session_key.
func publicProfile(u persistence.User, base string) map[string]any {
	p := map[string]any{
		"uid":       u.UID,
		"nickName":  u.Profile.NickName,
		"avatarUrl": absolute(u.Profile.AvatarURL, base),
	}
	if u.Profile.Gender != 0 {
		p["gender"] = u.Profile.Gender
	}
	for k, v := range map[string]string{"city": u.Profile.City, "province": u.Profile.Province, "country": u.Profile.Country, "language": u.Profile.Language} {
		if v != "" {
			p[k] = v
		}
	}
	return p
}

// absolute turns a path of this server into a URL a mini-program can load.
func absolute(u, base string) string {
	if strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") {
		return base + u
	}
	return u
}

// baseURL is scheme://host of this server as the client sees it.
// sharedBase returns b, as the string earlier sockets with the same base hold:
// rooms compare their members' bases per message, and equal strings that share
// their bytes compare without reading them.
func (s *Server) sharedBase(b string) string {
	if p := s.base.Load(); p != nil && *p == b {
		return *p
	}
	s.base.Store(&b)
	return b
}

func (s *Server) baseURL(r *http.Request) string {
	if s.opts.Media != nil {
		return s.opts.Media.BaseURL(r)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
