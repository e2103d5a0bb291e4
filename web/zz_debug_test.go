package web_test

import (
	"os"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

func TestDebugShots(t *testing.T) {
	browser := startBrowser(t)
	env := chattest.Start(t, server.Config{DevLogin: true, Rate: actors.Rate{Off: true}})
	a := newTab(t, browser, "A", 390, 760)
	shot := func(name string) {
		buf, err := chromedp.Run(a.ctx, chromedp.CaptureScreenshot())
		if err != nil { t.Fatal(err) }
		os.WriteFile("/tmp/shot-"+name+".png", buf, 0o644)
	}
	a.do(chromedp.Navigate(env.URL + "/"), chromedp.WaitVisible(chromedp.CSS("#signin-name")))
	shot("signin")
	a.do(chromedp.SendKeys(chromedp.CSS("#signin-name"), "Alice"), chromedp.Click(chromedp.CSS("#signin-go")), chromedp.WaitVisible(chromedp.CSS("#input")))
	a.until("conn", `window.__panda.state().connected`)
	shot("empty")
	bob := env.DevLogin("Bob")
	c := env.Dial(bob, "room=lobby")
	for i := 0; i < 30; i++ { c.Send(map[string]any{"text": true, "content": "message number " + string(rune('A'+i%26))}) }
	a.until("n", countText("theirs", "message number D")+" >= 1")
	a.eval(`document.getElementById('scroller').scrollTop = 0`, nil)
	for i := 0; i < 3; i++ { c.Send(map[string]any{"text": true, "content": "late"}) }
	a.until("late", countText("theirs", "late")+" === 3")
	shot("hint")
	a.eval(`window.__panda.dropSocket(true)`, nil)
	a.until("off", `document.getElementById('conn').dataset.state === 'offline'`)
	shot("offline")
	a.eval(`window.__panda.resume()`, nil)
	a.do(chromedp.Click(chromedp.CSS("#room-btn")), chromedp.WaitVisible(chromedp.CSS("#rooms-name")))
	shot("rooms")
	a.do(chromedp.Click(chromedp.CSS("#rooms [data-close]")), chromedp.Click(chromedp.CSS("#me-btn")), chromedp.WaitVisible(chromedp.CSS("#profile-name")))
	shot("profile")
}
