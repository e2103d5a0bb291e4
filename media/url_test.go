package media

import (
	"crypto/tls"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pandachat/pandachat/persistence"
)

func TestBaseURL(t *testing.T) {
	tests := []struct {
		name   string
		s      *Service
		tls    bool
		host   string
		header map[string]string
		want   string
	}{
		{name: "request host", host: "chat.local:8765", want: "http://chat.local:8765"},
		{name: "tls", tls: true, host: "chat.example.com", want: "https://chat.example.com"},
		{name: "public url", s: &Service{PublicURL: "https://chat.example.com/"}, host: "10.0.0.1", want: "https://chat.example.com"},
		{name: "public url wins over proxy", s: &Service{PublicURL: "https://a.example", TrustProxy: true}, host: "x",
			header: map[string]string{"X-Forwarded-Host": "b.example"}, want: "https://a.example"},
		{name: "proxy headers ignored", host: "127.0.0.1:8765",
			header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}, want: "http://127.0.0.1:8765"},
		{name: "trusted proxy", s: &Service{TrustProxy: true}, host: "127.0.0.1:8765",
			header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "Chat.Example.com"}, want: "https://chat.example.com"},
		{name: "trusted proxy chain", s: &Service{TrustProxy: true}, host: "127.0.0.1",
			header: map[string]string{"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "a.example, b.example"}, want: "https://a.example"},
		{name: "bad forwarded values", s: &Service{TrustProxy: true}, host: "chat.example.com",
			header: map[string]string{"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "evil.example/x?"}, want: "http://chat.example.com"},
		{name: "forwarded userinfo", s: &Service{TrustProxy: true}, host: "chat.example.com",
			header: map[string]string{"X-Forwarded-Host": "a@evil.example"}, want: "http://chat.example.com"},
		{name: "ipv6", host: "[::1]:8765", want: "http://[::1]:8765"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/upload", nil)
			r.Host = tt.host
			r.TLS = nil
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			if tt.s == nil {
				tt.s = &Service{}
			}
			if got := tt.s.BaseURL(r); got != tt.want {
				t.Fatalf("BaseURL = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	const base = "https://chat.example.com"
	meta := &memMeta{}
	id := strings.Repeat("0123456789abcdef", 4)
	meta.PutMedia(persistence.Media{ID: id, MIME: "image/png"})
	unknown := strings.Repeat("f", 64)
	s := &Service{Meta: meta, AllowedHosts: []string{"img.example.org", "CDN.example.net:443", "https://pics.example.com/"}}
	abs := base + "/media/" + id

	good := []struct{ raw, want string }{
		{abs, abs},
		{"/media/" + id, abs},
		{"http://chat.example.com/media/" + id, abs},
		{"HTTPS://Chat.Example.COM/media/" + id, abs},
		{"https://chat.example.com:443/media/" + id, abs},
		{"https://img.example.org/a/b.png", "https://img.example.org/a/b.png"},
		{"https://cdn.example.net/x.jpg", "https://cdn.example.net/x.jpg"},
		{"https://pics.example.com/y.webp", "https://pics.example.com/y.webp"},
	}
	for _, tt := range good {
		got, err := s.Resolve(tt.raw, base)
		if err != nil || got != tt.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}

	bad := []struct{ raw, why string }{
		{"", "empty"},
		{"javascript:alert(1)", "scheme"},
		{"JavaScript://chat.example.com/media/" + id, "scheme"},
		{"data:image/png;base64,iVBORw0KGgo=", "scheme"},
		{"ftp://chat.example.com/media/" + id, "scheme"},
		{"//evil.example/media/" + id, "scheme"},
		{"https://evil.example/media/" + id, "not allowed"},
		{"https://chat.example.com.evil.example/media/" + id, "not allowed"},
		{"https://chat.example.com@evil.example/media/" + id, "userinfo"},
		{"https://user:pw@chat.example.com/media/" + id, "userinfo"},
		{"https://chat.example.com:8443/media/" + id, "not allowed"},
		{"/media/" + unknown, "unknown media id"},
		{base + "/media/" + unknown, "unknown media id"},
		{"/media/" + strings.ToUpper(id), "not /media/"},
		{"/media/abc", "not /media/"},
		{"/media/" + id + "/", "not /media/"},
		{"/media/../media/" + id, "not /media/"},
		{"/etc/passwd", "not /media/"},
		{base + "/media/" + id + "?x=1", "query"},
		{base + "/media/" + id + "?", "query"},
		{base + "/media/" + id + "#top", "fragment"},
		{base + "/media/" + id + "#", "fragment"},
		{"/media/" + id + "?.png", "not /media/"},
		{base + "/media/%30" + id[1:], "is not"},
		{base + "/other/" + id, "is not"},
		{base + "/media/" + id + "/x", "is not"},
		{base, "is not"},
		{"https://chat.example.com\\@evil.example/media/" + id, "backslash"},
		{" " + abs, "spaces"},
		{abs + "\n", "control"},
		{"http://img.example.org/a.png", "https only"},
		{"https://img.example.org.evil.example/a.png", "not allowed"},
		{"https://img.example.org/a.png?sig=1", "query"},
		{"https://" + strings.Repeat("a", 3000), "longer"},
	}
	for _, tt := range bad {
		got, err := s.Resolve(tt.raw, base)
		if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("Resolve(%q) = %q, %v; want ErrBadURL about %q", tt.raw, got, err, tt.why)
		}
	}
}

func TestResolveBaseAndStore(t *testing.T) {
	id := strings.Repeat("ab", 32)
	s := &Service{Meta: &memMeta{getErr: errors.New("store closed")}}
	if _, err := s.Resolve("/media/"+id, "https://chat.example.com"); err == nil || errors.Is(err, ErrBadURL) {
		t.Errorf("store failure: err = %v, want a non-ErrBadURL error", err)
	}
	// A base with a path prefix is honoured; so is a base from an http request.
	meta := &memMeta{}
	meta.PutMedia(persistence.Media{ID: id})
	s = &Service{Meta: meta}
	for _, tt := range []struct{ raw, base, want string }{
		{"https://example.com/chat/media/" + id, "https://example.com/chat/", "https://example.com/chat/media/" + id},
		{"/chat/media/" + id, "https://example.com/chat", "https://example.com/chat/media/" + id},
		{"/media/" + id, "http://127.0.0.1:8765", "http://127.0.0.1:8765/media/" + id},
	} {
		if got, err := s.Resolve(tt.raw, tt.base); err != nil || got != tt.want {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q", tt.raw, tt.base, got, err, tt.want)
		}
	}
	for _, b := range []string{"", "chat.example.com", "javascript:x", "https://"} {
		if _, err := s.Resolve("/media/"+id, b); err == nil {
			t.Errorf("base %q accepted", b)
		}
	}
}

func TestValidHost(t *testing.T) {
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"chat.example.com", true},
		{"AZaz09.Example-x_y:8765", true},
		{"[::1]:8765", true},
		{"a", true},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a", 256), false},
		{"", false},
		{"a/b", false}, {"a@b", false}, {"a b", false}, {"a?b", false}, {"a#b", false}, {"a%2f", false},
		// Just outside each range: '`' before a, '{' after z, '@' before A, '\' after Z... and '/' before 0.
		{"a`", false}, {"z{", false}, {"@A", false}, {"Z^", false}, {"0/", false}, {"9;", false},
	} {
		if got := validHost(tt.host); got != tt.ok {
			t.Errorf("validHost(%.20q…) = %v, want %v", tt.host, got, tt.ok)
		}
	}
}
