package media

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/pandachat/pandachat/persistence"
)

const maxURLLen = 2048

// BaseURL is scheme://host for absolute media URLs: PublicURL when set, otherwise the
// request's own, with X-Forwarded-Proto / X-Forwarded-Host honoured only under TrustProxy.
func (s *Service) BaseURL(r *http.Request) string {
	if s.PublicURL != "" {
		return strings.TrimRight(s.PublicURL, "/")
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if s.TrustProxy {
		if p := strings.ToLower(firstValue(r.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); validHost(h) {
			host = h
		}
	}
	if !validHost(host) {
		host = "localhost"
	}
	return scheme + "://" + strings.ToLower(host)
}

// firstValue is the client-most entry of a comma-separated proxy header.
func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

// validHost accepts host[:port] made of the characters DNS names, IPv6 literals and ports use,
// so a forged header cannot smuggle a path or userinfo into our URLs.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".-_:[]", c) >= 0) {
			return false
		}
	}
	return true
}

// Resolve validates the url of a gallery message or an avatarUrl against base (from
// BaseURL) and returns the absolute URL to broadcast. It accepts base + "/media/<id>"
// (http or https, same host), the bare path "/media/<id>" — for a stored id only —
// and https URLs on AllowedHosts, returned unchanged. Any other url gives an error
// wrapping ErrBadURL that says why; a failing MetaStore gives its own error.
func (s *Service) Resolve(raw string, base string) (abs string, err error) {
	b, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (b.Scheme != "http" && b.Scheme != "https") || b.Host == "" {
		return "", fmt.Errorf("media: bad base url %q", base)
	}
	prefix := b.Scheme + "://" + b.Host + b.Path + "/media/"
	switch {
	case raw == "":
		return "", badURL("empty url")
	case len(raw) > maxURLLen:
		return "", badURL("url longer than %d bytes", maxURLLen)
	case strings.ContainsFunc(raw, func(c rune) bool { return c <= ' ' || c == 0x7f || c == '\\' }):
		return "", badURL("url contains spaces, control characters or backslashes") // browsers drop or rewrite them
	case strings.HasPrefix(raw, "/") && !strings.HasPrefix(raw, "//"):
		id, ok := strings.CutPrefix(raw, "/media/")
		if !ok {
			id, ok = strings.CutPrefix(raw, b.Path+"/media/")
		}
		if !ok || !validID(id) {
			return "", badURL("path %q is not /media/<64 hex id>", raw)
		}
		return s.known(prefix, id)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", badURL("%v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", badURL("scheme %q: only http and https", u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return "", badURL("no host")
	case u.User != nil:
		return "", badURL("userinfo is not allowed")
	case u.RawQuery != "" || u.ForceQuery:
		return "", badURL("query is not allowed")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", badURL("fragment is not allowed")
	}
	host := hostKey(u)
	if host == hostKey(b) {
		id, ok := strings.CutPrefix(u.Path, b.Path+"/media/")
		if !ok || u.RawPath != "" || !validID(id) {
			return "", badURL("path %q is not %s/media/<64 hex id>", u.EscapedPath(), b.Path)
		}
		return s.known(prefix, id)
	}
	for _, a := range s.AllowedHosts {
		a = strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(a), "https://"), "/")
		if strings.TrimSuffix(a, ":443") != host {
			continue
		}
		if u.Scheme != "https" {
			return "", badURL("host %q is allowed over https only", u.Host)
		}
		return raw, nil
	}
	return "", badURL("host %q is not this server and not allowed", u.Host)
}

// hostKey is the lowercase host with the scheme's default port dropped.
func hostKey(u *url.URL) string {
	h := strings.ToLower(u.Host)
	if u.Scheme == "https" {
		return strings.TrimSuffix(h, ":443")
	}
	return strings.TrimSuffix(h, ":80")
}

// known returns prefix+id when id is stored.
func (s *Service) known(prefix, id string) (string, error) {
	if s.Meta == nil {
		return "", errors.New("media: no metadata store")
	}
	_, err := s.Meta.Media(id)
	if errors.Is(err, persistence.ErrNotFound) {
		return "", badURL("unknown media id %s", id)
	}
	if err != nil {
		return "", fmt.Errorf("media: look up %s: %w", id, err)
	}
	return prefix + id, nil
}

func badURL(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadURL}, args...)...)
}
