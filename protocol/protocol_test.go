package protocol_test

import (
	"strings"
	"testing"

	"github.com/pandachat/pandachat/protocol"
)

func TestValidRoom(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"lobby", true},
		{"azAZ09_-", true},
		{"a", true},
		{strings.Repeat("r", protocol.MaxRoomLen), true},
		{"", false},
		{strings.Repeat("r", protocol.MaxRoomLen+1), false},
		// the neighbours of each allowed range
		{"`", false}, {"{", false}, {"@", false}, {"[", false}, {"/", false}, {":", false},
		{"^", false}, {",", false}, {".", false}, {" ", false}, {"room/x", false}, {"熊猫", false}, {"a\x00", false},
	} {
		if got := protocol.ValidRoom(tt.name); got != tt.ok {
			t.Errorf("ValidRoom(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}
