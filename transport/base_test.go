package transport

import (
	"strings"
	"testing"
	"unsafe"
)

// Sockets that see the server at the same base share one string for it, so a
// room's per-member comparison of bases is a pointer check; another base is
// kept apart and then shared in its turn.
func TestSharedBase(t *testing.T) {
	s := New(Options{})
	fresh := func(b string) string { return strings.Clone(b) }
	a1 := s.sharedBase(fresh("https://chat.example.com"))
	a2 := s.sharedBase(fresh("https://chat.example.com"))
	if a1 != a2 || unsafe.StringData(a1) != unsafe.StringData(a2) {
		t.Fatalf("equal bases do not share their bytes: %q at %p, %q at %p", a1, unsafe.StringData(a1), a2, unsafe.StringData(a2))
	}
	b := s.sharedBase(fresh("http://10.0.0.2:8080"))
	if b != "http://10.0.0.2:8080" {
		t.Fatalf("another base came back as %q", b)
	}
	b2 := s.sharedBase(fresh("http://10.0.0.2:8080"))
	if unsafe.StringData(b) != unsafe.StringData(b2) {
		t.Fatal("the second base is not shared after it")
	}
	if a3 := s.sharedBase(fresh("https://chat.example.com")); a3 != "https://chat.example.com" {
		t.Fatalf("the first base came back as %q", a3)
	}
}
