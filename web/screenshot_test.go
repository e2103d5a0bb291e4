package web_test

import (
	"image/color"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// TestScreenshot renders a lively conversation (avatars, an image, both sides
// of the chat) at desktop and phone sizes. With PANDA_SCREENSHOT=1 it writes
// them as docs/screenshot.png and docs/screenshot-phone.png:
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
	cb := env.Dial(bob, "room=lobby")
	cm := env.Dial(mei, "room=lobby")

	a := newTab(t, browser, "Alice", 980, 840)
	a.signIn(env.URL, "lobby", "Alice")
	a.until("three online", `document.getElementById('online-count').textContent === '3'`)

	remote := func(c *chattest.Client, msg map[string]any, check string) {
		t.Helper()
		c.Send(msg)
		a.until("a message from the others", check)
	}
	shows := func(text string) string { return countText("theirs", text) + ` === 1` }
	mine := func(text string) { t.Helper(); a.say(text); a.until("sent", countText("mine", text)+` === 1`) }

	remote(cb, map[string]any{"text": true, "content": "Morning, pandas! Who is up for the bamboo hike on Saturday?"}, shows("Morning, pandas! Who is up for the bamboo hike on Saturday?"))
	remote(cm, map[string]any{"text": true, "content": "Me! I went up the ridge trail last weekend, the view at sunset is unreal."}, shows("Me! I went up the ridge trail last weekend, the view at sunset is unreal."))
	pic := upload(t, env, mei, writePNG(t, "ridge.png", 480, 320, landscape(480, 320)))
	remote(cm, map[string]any{"gallery": true, "url": pic}, `Array.from(document.querySelectorAll('#list .thumb img')).some(i => i.complete && i.naturalWidth === 480)`)
	mine("Wow, that looks amazing")
	mine("Count me in. Should we meet at the trailhead at 8?")
	remote(cb, map[string]any{"text": true, "content": "8 works. Weather looks good: https://weather.example.com/ridge"}, shows("8 works. Weather looks good: https://weather.example.com/ridge"))
	remote(cm, map[string]any{"text": true, "content": "I'll bring snacks"}, shows("I'll bring snacks"))
	mine("Perfect, see you there!")
	a.until("scrolled to the bottom", `(() => { const s = document.getElementById('scroller'); return s.scrollHeight - s.scrollTop - s.clientHeight < 4; })()`)

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
