package persistence

import (
	"fmt"
	"testing"
	"time"
)

// Expired sessions leave the memory store as new ones come (once the map has
// doubled): it grows with the sessions alive, not with every login ever made.
func TestMemoryDropsExpiredSessions(t *testing.T) {
	m := NewMemory()
	soon := time.Now().Add(30 * time.Millisecond)
	for i := range 1000 {
		if err := m.PutSession(Session{ID: fmt.Sprint("old", i), UID: "u", Expires: soon}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	for i := range 1000 {
		u := User{UID: fmt.Sprint("u", i)}
		if err := m.PutLogin(u, Session{ID: fmt.Sprint("new", i), UID: u.UID, Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.RLock()
	n, old := len(m.sessions), 0
	for _, s := range m.sessions {
		if !s.Expires.After(time.Now()) {
			old++
		}
	}
	m.mu.RUnlock()
	if old > 0 || n != 1000 {
		t.Errorf("%d sessions kept, %d of them expired, after 1 000 expired and 1 000 new; want the 1 000 alive", n, old)
	}
	if _, err := m.Session("new7"); err != nil {
		t.Errorf("a live session is gone: %v", err)
	}
}
