package web_test

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// TestScreenshot renders a lively conversation (avatars, an image, both sides
// of the chat, reactions, a recalled message, a mention of the reader, someone
// typing, unread news in another room) at desktop and phone sizes. With
// PANDA_SCREENSHOT=1 it writes them as docs/screenshot.png and
// docs/screenshot-phone.png:
//
//	PANDA_SCREENSHOT=1 go test ./web -run TestScreenshot
func TestScreenshot(t *testing.T) {
	docs := t.TempDir()
	if os.Getenv("PANDA_SCREENSHOT") == "1" {
		docs = filepath.Join("..", "docs")
	}
	browser := startBrowser(t)
	env := chattest.Start(t, server.Config{DevLogin: true})

	bob := env.DevLogin("Bob")
	mei := env.DevLogin("Mei")
	setAvatar(t, env, bob, "Bob", writePNG(t, "bob.png", 96, 96, face(color.RGBA{0xf4, 0xa2, 0x61, 0xff}, color.RGBA{0x5b, 0x3a, 0x29, 0xff})))
	setAvatar(t, env, mei, "Mei", writePNG(t, "mei.png", 96, 96, face(color.RGBA{0x8e, 0xc5, 0xfc, 0xff}, color.RGBA{0x2b, 0x2d, 0x42, 0xff})))
	cb := env.Dial(bob, "room=lobby&v=2")
	cm := env.Dial(mei, "room=lobby&v=2")

	a := newTab(t, browser, "Alice", 980, 840)
	// Alice has been in the trail room before: news there shows in the switcher.
	a.signIn(env.URL, "trail", "Alice")
	a.eval(`location.hash = '#/room/lobby'`, nil)
	a.until("in the lobby", `window.__panda.state().room === 'lobby' && window.__panda.state().connected`)
	a.until("three online", `document.getElementById('online-count').textContent === '3'`)
	var alice string
	a.eval(`window.__panda.state().me.uid`, &alice)

	remote := func(c *chattest.Client, msg map[string]any, check string) {
		t.Helper()
		c.Send(msg)
		a.until("a message from the others", check)
	}
	shows := func(text string) string { return countText("theirs", text) + ` === 1` }
	mine := func(text string) { t.Helper(); a.say(text); a.until("sent", countText("mine", text)+` === 1`) }

	react := func(c *chattest.Client, id int, emoji string) {
		t.Helper()
		c.Send(map[string]any{"react": id, "emoji": emoji})
		a.until("the reaction", fmt.Sprintf(`Array.from(document.querySelectorAll('#list li.msg[data-id="%d"] .chip .e')).some(e => e.textContent === %s)`, id, js(emoji)))
	}

	const hike = "Morning, pandas! Who is up for the bamboo hike on Saturday?"
	remote(cb, map[string]any{"text": true, "content": hike}, shows(hike))
	remote(cm, map[string]any{"text": true, "content": "Me! I went up the ridge trail last weekend, the view at sunset is unreal."}, shows("Me! I went up the ridge trail last weekend, the view at sunset is unreal."))
	react(cm, a.msgID(hike), "🎉")
	pic := upload(t, env, mei, writePNG(t, "ridge.png", 480, 320, landscape(480, 320)))
	remote(cm, map[string]any{"gallery": true, "url": pic}, `Array.from(document.querySelectorAll('#list .thumb img')).some(i => i.complete && i.naturalWidth === 480)`)
	var picID int
	a.eval(`+document.querySelector('#list li.msg.theirs:has(.thumb)').dataset.id`, &picID)
	react(cb, picID, "😮")
	mine("Wow, that looks amazing")
	mine("Count me in. Should we meet at the trailhead at 8?")
	const weather = "8 works. Weather looks good: https://weather.example.com/ridge"
	remote(cb, map[string]any{"text": true, "content": weather}, shows(weather))
	react(cm, a.msgID(weather), "👍")
	// Alice adds hers with a click on the chip.
	a.do(chromedp.Click(chromedp.CSS(a.msgSel(weather) + " .reactions .chip")))
	a.until("Alice's reaction", `document.querySelector(`+js(a.msgSel(weather)+" .chip.mine")+`) !== null`)
	remote(cb, map[string]any{"text": true, "content": "I'll bring my old tent"}, shows("I'll bring my old tent"))
	cb.Send(map[string]any{"recall": a.msgID("I'll bring my old tent")})
	a.until("recalled", `Array.from(document.querySelectorAll('#list .recall-note')).some(e => e.textContent === 'Bob recalled a message')`)
	remote(cm, map[string]any{"text": true, "content": "@Alice can you bring the map?", "mentions": []string{alice}},
		`document.querySelector('#list li.msg.mentioned .mention.me') !== null`)
	mine("Perfect, see you there!")
	// News in the trail room, seen from the lobby.
	ct := env.Dial(bob, "room=trail&v=2")
	ct.NextOfType("system")
	ct.Send(map[string]any{"text": true, "content": "The trail is dry today"})
	ct.NextOfType("user")
	a.do(chromedp.Click(chromedp.CSS("#room-btn")), chromedp.WaitVisible(chromedp.CSS("#rooms-name")))
	a.until("the unread badge", `document.getElementById('rooms-badge').textContent === '1'`)
	a.do(chromedp.Click(chromedp.CSS("#rooms [data-close]")), chromedp.WaitNotVisible(chromedp.CSS("#rooms-name")))
	typing := func() {
		t.Helper()
		cb.Send(map[string]any{"typing": true})
		a.until("Bob typing", `document.getElementById('typing').textContent === 'Bob is typing…'`)
	}
	typing()
	typedAt := time.Now()
	a.until("scrolled to the bottom", `(() => { const s = document.getElementById('scroller'); return s.scrollHeight - s.scrollTop - s.clientHeight < 4; })()`)
	// The pointer rests on one of Alice's messages: its actions bar shows.
	wow := a.msgSel("Wow, that looks amazing")
	var pt struct{ X, Y float64 }
	a.eval(`(() => { const r = document.querySelector(`+js(wow+" .bubble")+`).getBoundingClientRect(); return {X: r.left + r.width / 2, Y: r.top + r.height / 2}; })()`, &pt)
	a.do(chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, pt.X, pt.Y))
	a.until("the actions bar", `getComputedStyle(document.querySelector(`+js(wow+" .tools")+`)).display === 'flex'`)

	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(a.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(docs, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d KB)", path, len(buf)/1024)
	}
	shot("screenshot.png")

	time.Sleep(time.Until(typedAt.Add(3100 * time.Millisecond))) // one typing notice per 3 s
	typing()
	a.do(chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 1, 1)) // a phone has no pointer resting anywhere
	a.do(chromedp.EmulateViewport(360, 720))
	a.until("scrolled to the bottom", `(() => { const s = document.getElementById('scroller'); s.scrollTop = s.scrollHeight; return s.scrollHeight - s.scrollTop - s.clientHeight < 4; })()`)
	shot("screenshot-phone.png")
	a.clean()
}

// face paints a round, friendly avatar.
func face(bg, ink color.RGBA) func(x, y int) color.Color {
	return func(x, y int) color.Color {
		in := func(cx, cy, r int) bool { dx, dy := x-cx, y-cy; return dx*dx+dy*dy <= r*r }
		switch {
		case in(36, 42, 6) || in(60, 42, 6):
			return ink
		case in(48, 58, 18) && !in(48, 52, 18):
			return ink
		default:
			return bg
		}
	}
}

// upload posts a file as the user and returns its media URL.
func upload(t *testing.T, env *chattest.Env, s chattest.Session, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	code, ans := env.Upload(s, filepath.Base(path), data)
	u, _ := ans["url"].(string)
	if code != 200 || u == "" {
		t.Fatalf("upload: HTTP %d %v", code, ans)
	}
	return u
}

func setAvatar(t *testing.T, env *chattest.Env, s chattest.Session, nick, path string) {
	t.Helper()
	url := upload(t, env, s, path)
	if code := env.Do(s, "POST", "/profile", map[string]string{"nickName": nick, "avatarUrl": url}, nil); code != 200 {
		t.Fatalf("profile: HTTP %d", code)
	}
}
