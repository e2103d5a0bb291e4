package web_test

import (
	"fmt"
	"testing"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

func TestSeed(t *testing.T) {
	env := chattest.Start(t, server.Config{DevLogin: true, Rate: actors.Rate{Off: true}})
	for _, room := range []string{"e2e", "history"} {
		carol := env.DevLogin("Carol")
		c := env.Dial(carol, "room="+room)
		for i := 1; i <= 75; i++ {
			c.Send(map[string]any{"text": true, "content": fmt.Sprintf("history %d", i)})
		}
		got := 0
		for {
			m := c.NextChat()
			if m.Type != "user" && m.Type != "system" { t.Logf("frame %+v", m) }
			got++
			if m.Content == "history 75" { break }
		}
	}
}
