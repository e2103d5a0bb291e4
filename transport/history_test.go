package transport_test

import (
	"fmt"
	"testing"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// A /history page never holds more than --history-limit messages, whatever
// limit the client asks for: the newest ones, oldest first.
func TestHistoryCap(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cap    int // server.Config.HistoryLimit; 0 is the default, 100
		stored int
		ask    string
		want   int
	}{
		{"default cap", 0, 130, "limit=500", 100},
		{"configured cap", 7, 12, "limit=10", 7},
		{"below the cap", 7, 12, "limit=5", 5},
		{"default page", 0, 130, "", 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := chattest.Start(t, server.Config{DevLogin: true, Rate: actors.Rate{Off: true}, HistoryLimit: tc.cap})
			s := env.DevLogin("a")
			post(t, env, s, "cap", tc.stored)
			var page []chattest.Chat
			if st := env.Do(s, "GET", "/history?room=cap&"+tc.ask, nil, &page); st != 200 {
				t.Fatalf("HTTP %d", st)
			}
			if len(page) != tc.want {
				t.Fatalf("page has %d messages, want %d", len(page), tc.want)
			}
			for i, m := range page {
				if want := uint64(tc.stored - tc.want + 1 + i); m.ID != want || m.Content != fmt.Sprintf("m%d", want) {
					t.Fatalf("item %d: %+v, want id %d", i, m, want)
				}
			}
		})
	}
}
