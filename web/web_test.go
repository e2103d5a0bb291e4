package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// wait bounds every single browser step; steps wait on conditions, never on time.
const wait = 20 * time.Second

// chromePath finds the browser: $PANDA_CHROME, else the usual names on PATH.
func chromePath() string {
	if p := os.Getenv("PANDA_CHROME"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startBrowser runs a headless Chromium with a fresh profile, or skips the
// test when there is none (fails instead in CI, where it must be installed).
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromePath()
	if path == "" {
		const why = "no Chromium found (install the Debian package chromium, or set PANDA_CHROME)"
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	dir := t.TempDir() // before the allocator's cleanup, so the browser is gone when it is removed
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dir),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(browser); err != nil { // starts the browser, with no deadline
		t.Fatalf("start %s: %v", path, err)
	}
	return browser
}

// tab is one browser tab with its own storage (its own browser context).
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu      sync.Mutex
	dialogs []string // JavaScript dialogs the page opened
	errs    []string // uncaught exceptions
}

func newTab(t *testing.T, browser context.Context, name string, width, height int64) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run opens the tab and binds it to its context: no deadline here.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		t.Fatalf("open tab %s: %v", name, err)
	}
	// Every WebSocket URL the page opens is kept in window.__wsURLs (a test
	// checks that no skey goes into one).
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: recordWebSockets}); err != nil {
		t.Fatalf("tab %s: %v", name, err)
	}
	b := &tab{t: t, name: name, ctx: ctx}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.dialogs = append(b.dialogs, string(ev.Type)+": "+ev.Message)
			b.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() {
				b.mu.Lock()
				b.errs = append(b.errs, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

const recordWebSockets = `(function () {
  var W = window.WebSocket;
  window.__wsURLs = [];
  window.WebSocket = function (u, p) {
    window.__wsURLs.push(String(u));
    return p === undefined ? new W(u) : new W(u, p);
  };
  window.WebSocket.prototype = W.prototype;
  ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'].forEach(function (k) { window.WebSocket[k] = W[k]; });
})();`

// clean fails the test if the page opened a dialog or threw.
func (b *tab) clean() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.dialogs) > 0 {
		b.t.Errorf("%s: the page opened dialogs: %q", b.name, b.dialogs)
	}
	if len(b.errs) > 0 {
		b.t.Errorf("%s: uncaught exceptions: %q", b.name, b.errs)
	}
}

func (b *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, wait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\n%s", b.name, err, b.debug())
	}
}

// eval runs a JavaScript expression and decodes its value into out.
func (b *tab) eval(js string, out any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, wait)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js))
	if err != nil {
		b.t.Fatalf("%s: eval %s: %v", b.name, js, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.t.Fatalf("%s: eval %s: %s: %v", b.name, js, raw, err)
		}
	}
}

// until waits for a JavaScript condition to become true.
func (b *tab) until(what, js string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, wait+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(wait)))
	if err != nil {
		b.t.Fatalf("%s: waiting for %s: %v\n%s", b.name, what, err, b.debug())
	}
}

// debug describes the page for a failure message.
func (b *tab) debug() string {
	ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		state: window.__panda && window.__panda.state(),
		conn: (document.getElementById('conn-text') || {}).textContent,
		items: Array.from(document.querySelectorAll('#list > li')).slice(-12).map(li => li.className + ' ' + (li.dataset.id || '') + ' ' + li.textContent.slice(0, 60)),
	}, null, 1)`))
	if err != nil {
		return "(page state unavailable: " + err.Error() + ")"
	}
	return b.name + " page: " + s
}

// on makes the tabs report to t (a subtest must not fail its parent).
func on(t *testing.T, tabs ...*tab) {
	for _, p := range tabs {
		p.t = t
	}
}

// enter presses Enter in the focused field the way a keyboard does: keydown
// and keyup, with no separate char event (SendKeys's "\n" adds one).
var enter = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		}); err != nil {
			return err
		}
	}
	return nil
})

// signIn opens the client in room and signs in with nick.
func (b *tab) signIn(base, room, nick string) {
	b.t.Helper()
	b.do(
		chromedp.Navigate(base+"/#/room/"+room),
		chromedp.WaitVisible(chromedp.CSS("#signin-name")),
		chromedp.SendKeys(chromedp.CSS("#signin-name"), nick),
		chromedp.Click(chromedp.CSS("#signin-go")),
		chromedp.WaitVisible(chromedp.CSS("#input")),
	)
	b.until("connected", `window.__panda.state().connected`)
}

// say types text into the composer and presses Enter.
func (b *tab) say(text string) {
	b.t.Helper()
	b.do(chromedp.SendKeys(chromedp.CSS("#input"), text), enter)
}

// idsInOrder checks that the messages tab shows have ids that follow on, in order.
func idsInOrder(t *testing.T, tb *tab, when string) {
	t.Helper()
	var ids []int
	tb.eval(`Array.from(document.querySelectorAll('#list li.msg[data-id]')).map(li => +li.dataset.id)`, &ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Errorf("%s: message ids are not consecutive and in order: %v", when, ids)
			return
		}
	}
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// countText is a JavaScript expression: how many confirmed messages of the
// given side ("mine"/"theirs") show exactly this text.
func countText(side, text string) string {
	return fmt.Sprintf(`Array.from(document.querySelectorAll('#list li.msg.%s[data-id] .text')).filter(e => e.textContent === %s).length`, side, js(text))
}

// writePNG writes a w×h picture to a temp file and returns its path.
func writePNG(t *testing.T, name string, w, h int, paint func(x, y int) color.Color) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, paint(x, y))
		}
	}
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// landscape paints hills under a sunset sky: a picture worth sending.
func landscape(w, h int) func(x, y int) color.Color {
	return func(x, y int) color.Color {
		fx, fy := float64(x)/float64(w), float64(y)/float64(h)
		hill1 := 0.62 + 0.08*math.Sin(fx*5.5+0.6)
		hill2 := 0.74 + 0.06*math.Sin(fx*8+2)
		sx, sy := fx-0.68, fy-0.42
		switch {
		case fy > hill2:
			return color.RGBA{uint8(40 + 30*fy), uint8(110 + 40*fx), 70, 255}
		case fy > hill1:
			return color.RGBA{70, uint8(150 + 30*fx), 95, 255}
		case sx*sx+sy*sy*0.6 < 0.006:
			return color.RGBA{255, 236, 170, 255}
		default:
			return color.RGBA{uint8(250 - 60*fy), uint8(150 + 70*fy), uint8(120 + 120*fy), 255}
		}
	}
}

// replayLimit is the test server's --replay-limit.
const replayLimit = 10

// TestBrowser drives the real client in Chromium against a real server: two
// people with separate storage chat, send an image, survive a dropped
// connection and read older history.
func TestBrowser(t *testing.T) {
	browser := startBrowser(t)
	// A small replay limit, so that a short absence leaves a replay hole.
	env := chattest.Start(t, server.Config{DevLogin: true, Rate: actors.Rate{Off: true}, ReplayLimit: replayLimit})

	const room = "e2e"
	a := newTab(t, browser, "A", 1100, 800)
	b := newTab(t, browser, "B", 360, 740) // a phone

	// Sign in; both see each other online.
	a.signIn(env.URL, room, "Alice")
	b.signIn(env.URL, room, "Bob")
	a.until("online count 2", `document.getElementById('online-count').textContent === '2'`)
	b.until("online count 2", `document.getElementById('online-count').textContent === '2'`)

	// Someone outside the browser fills a room with more than two pages of
	// history. (Seeded here: chattest helpers fail the test they were made with.)
	const n = 75
	carol := env.DevLogin("Carol")
	c := env.Dial(carol, "room=history")
	c.NextOfType("system") // the room has taken the connection in
	for i := 1; i <= n; i++ {
		c.Send(map[string]any{"text": true, "content": fmt.Sprintf("history %d", i)})
	}
	for c.NextChat().Content != fmt.Sprintf("history %d", n) {
	}

	t.Run("text", func(t *testing.T) {
		on(t, a, b)
		a.say("Hello Bob, welcome to the bamboo grove!")
		b.until("Alice's message on the left", countText("theirs", "Hello Bob, welcome to the bamboo grove!")+` === 1`)
		a.until("own message on the right", countText("mine", "Hello Bob, welcome to the bamboo grove!")+` === 1`)
		var info struct {
			Name   string
			Avatar bool
			Mine   int
			Value  string
		}
		b.eval(`(() => {
			const li = document.querySelector('#list li.msg.theirs[data-id]');
			return { Name: li.querySelector('.name').textContent, Avatar: !!li.querySelector('img.avatar'),
				Mine: document.querySelectorAll('#list li.msg.mine').length, Value: '' };
		})()`, &info)
		if info.Name != "Alice" || !info.Avatar || info.Mine != 0 {
			t.Errorf("B shows Alice's message as %+v; want name Alice, an avatar, and nothing on the right", info)
		}
		a.eval(`({ Value: document.getElementById('input').value, Name: '', Avatar: false, Mine: 0 })`, &info)
		if info.Value != "" {
			t.Errorf("composer after Enter = %q, want empty", info.Value)
		}
	})

	t.Run("escaping", func(t *testing.T) {
		on(t, a, b)
		const evil = `<img src=x onerror=alert(1)>`
		a.say(evil)
		b.until("the markup shown as text", countText("theirs", evil)+` === 1`)
		a.until("the markup shown as text", countText("mine", evil)+` === 1`)
		for _, p := range []*tab{a, b} {
			var imgs int
			p.eval(`document.querySelectorAll('#list .text img, #list .text *:not(a)').length`, &imgs)
			if imgs != 0 {
				t.Errorf("%s: %d elements were made from message text", p.name, imgs)
			}
		}
		// A link is a safe anchor; a javascript: URL stays text.
		a.say("docs at https://example.com/a?b=1 and javascript:alert(2)")
		var link struct{ Href, Rel, Target string }
		b.until("the link", `document.querySelector('#list li.msg.theirs .text a') !== null`)
		b.eval(`(() => { const a = document.querySelector('#list li.msg.theirs .text a'); return { Href: a.href, Rel: a.rel, Target: a.target }; })()`, &link)
		if link.Href != "https://example.com/a?b=1" || !strings.Contains(link.Rel, "noopener") {
			t.Errorf("link = %+v, want https://example.com/a?b=1 with rel noopener", link)
		}
		var anchors int
		b.eval(`document.querySelectorAll('#list a[href^="javascript"]').length`, &anchors)
		if anchors != 0 {
			t.Errorf("%d javascript: anchors", anchors)
		}
	})

	t.Run("image", func(t *testing.T) {
		on(t, a, b)
		pic := writePNG(t, "hills.png", 120, 80, landscape(120, 80))
		a.do(chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{pic}))
		b.until("the image", `Array.from(document.querySelectorAll('#list li.msg.theirs[data-id] .thumb img')).some(i => i.complete && i.naturalWidth === 120 && i.naturalHeight === 80)`)
		a.until("own image confirmed", `document.querySelectorAll('#list li.msg.mine[data-id] .thumb img').length === 1 && !document.querySelector('#list li.pending')`)
		var src string
		b.eval(`document.querySelector('#list li.msg.theirs[data-id] .thumb img').src`, &src)
		if !strings.HasPrefix(src, env.URL+"/media/") {
			t.Errorf("image src = %q, want a media URL of the server", src)
		}
		// The thumbnail opens the full-size viewer.
		b.do(chromedp.Click(chromedp.CSS("#list li.msg.theirs[data-id] .thumb")), chromedp.WaitVisible(chromedp.CSS("#viewer-img")))
		b.until("the viewer shows the image", `document.getElementById('viewer-img').src === `+js(src))
		b.do(chromedp.Click(chromedp.CSS("#viewer")), chromedp.WaitNotVisible(chromedp.CSS("#viewer")))
	})

	t.Run("paste and drop", func(t *testing.T) {
		on(t, a, b)
		// A picture pasted into the composer, then one dropped on the chat.
		for _, c := range []struct {
			event string
			width int
		}{{"paste", 50}, {"drop", 60}} {
			a.eval(fmt.Sprintf(`(() => {
				const c = document.createElement('canvas'); c.width = %d; c.height = 40;
				const g = c.getContext('2d'); g.fillStyle = '#e67e22'; g.fillRect(0, 0, c.width, 40);
				c.toBlob(blob => {
					const dt = new DataTransfer();
					dt.items.add(new File([blob], 'picture.png', {type: 'image/png'}));
					const init = {bubbles: true, cancelable: true};
					const ev = %q === 'paste'
						? new ClipboardEvent('paste', {...init, clipboardData: dt})
						: new DragEvent('drop', {...init, dataTransfer: dt});
					(ev.type === 'paste' ? document.getElementById('input') : document.getElementById('scroller')).dispatchEvent(ev);
				}, 'image/png');
				return true;
			})()`, c.width, c.event), nil)
			b.until("the "+c.event+"d image", fmt.Sprintf(`Array.from(document.querySelectorAll('#list li.msg.theirs[data-id] .thumb img')).some(i => i.complete && i.naturalWidth === %d)`, c.width))
		}
	})

	t.Run("profile", func(t *testing.T) {
		on(t, a, b)
		pic := writePNG(t, "me.png", 64, 64, func(x, y int) color.Color { return color.RGBA{uint8(x * 4), 120, uint8(y * 4), 255} })
		b.do(
			chromedp.Click(chromedp.CSS("#me-btn")),
			chromedp.WaitVisible(chromedp.CSS("#profile-name")),
			chromedp.SetUploadFiles(chromedp.CSS("#profile-file"), []string{pic}),
		)
		b.until("the new picture", `document.getElementById('profile-avatar').src.includes('/media/') && !document.getElementById('profile-save').disabled`)
		b.do(
			chromedp.SetValue(chromedp.CSS("#profile-name"), "Robert"),
			chromedp.Click(chromedp.CSS("#profile-save")),
		)
		b.until("the dialog closed", `!document.getElementById('profile').open && document.getElementById('me-avatar').src.includes('/media/')`)
		b.say("I am Robert now")
		a.until("the new name and picture", `Array.from(document.querySelectorAll('#list li.msg.theirs[data-id]')).some(li =>
			li.querySelector('.text') && li.querySelector('.text').textContent === 'I am Robert now' &&
			li.querySelector('.name').textContent === 'Robert' && li.querySelector('img.avatar').src.includes('/media/'))`)
	})

	t.Run("reconnect", func(t *testing.T) {
		on(t, a, b)
		b.eval(`window.__panda.dropSocket(true)`, nil)
		b.until("offline state shown", `document.getElementById('conn').dataset.state === 'offline'`)
		a.until("B gone", `document.getElementById('online-count').textContent === '1'`)
		missed := []string{"while you were away 1", "while you were away 2", "while you were away 3"}
		for _, m := range missed {
			a.say(m)
		}
		for _, m := range missed {
			a.until("sent: "+m, countText("mine", m)+` === 1`)
		}
		b.eval(`window.__panda.resume()`, nil)
		b.until("connected again", `document.getElementById('conn').dataset.state === 'online'`)
		a.say("welcome back")
		b.until("the live message after the replay", countText("theirs", "welcome back")+` === 1`)
		for _, m := range missed {
			var n int
			b.eval(countText("theirs", m), &n)
			if n != 1 {
				t.Errorf("B shows %q %d times, want once", m, n)
			}
		}
		idsInOrder(t, b, "after the reconnect")
	})

	t.Run("replay hole", func(t *testing.T) {
		on(t, a, b)
		b.eval(`window.__panda.dropSocket(true)`, nil)
		b.until("offline state shown", `document.getElementById('conn').dataset.state === 'offline'`)
		var missed []string
		for i := 1; i <= replayLimit+8; i++ { // more than the server replays
			missed = append(missed, fmt.Sprint("long away ", i))
			a.say(missed[i-1])
		}
		a.until("all sent", countText("mine", missed[len(missed)-1])+` === 1`)
		b.eval(`window.__panda.resume()`, nil)
		b.until("connected again", `document.getElementById('conn').dataset.state === 'online'`)
		for _, m := range missed { // the replay's newest ones and the hole's, paged from /history
			b.until("shown: "+m, countText("theirs", m)+` === 1`)
		}
		idsInOrder(t, b, "after the hole")
	})

	t.Run("long session", func(t *testing.T) {
		on(t, a, b)
		b.eval(`window.__panda.setMaxShown(15)`, nil)
		defer b.eval(`window.__panda.setMaxShown(1000)`, nil)
		b.eval(`(document.getElementById('scroller').scrollTop = 1e9, 0)`, nil) // at the live end
		for i := 1; i <= 25; i++ {
			a.say(fmt.Sprint("all day ", i))
		}
		b.until("the newest shown", countText("theirs", "all day 25")+` === 1`)
		var n int
		b.eval(`document.querySelectorAll('#list li.msg[data-id]').length`, &n)
		if n > 15 {
			t.Errorf("B holds %d messages at the live end, want at most 15", n)
		}
		b.until("an older one pages back in on scrolling up", `(document.getElementById('scroller').scrollTop = 0, `+countText("theirs", "all day 5")+` === 1)`)
	})

	t.Run("history", func(t *testing.T) {
		on(t, a, b)
		b.do(
			chromedp.Click(chromedp.CSS("#room-btn")),
			chromedp.WaitVisible(chromedp.CSS("#rooms-name")),
			chromedp.SendKeys(chromedp.CSS("#rooms-name"), "history"),
			chromedp.Click(chromedp.CSS(`#rooms-form button[value="go"]`)),
		)
		b.until("the room in the URL and header", `location.hash === '#/room/history' && document.getElementById('room-name').textContent === 'history'`)
		b.until("the newest message", countText("theirs", fmt.Sprintf("history %d", n))+` === 1`)
		var first int
		b.eval(`document.querySelectorAll('#list li.msg[data-id]').length`, &first)
		if first >= n {
			t.Fatalf("the first page already holds %d messages; the test needs more history", first)
		}
		// Scroll to the top until the first message has come in.
		b.until("the oldest message after scrolling up", `(document.getElementById('scroller').scrollTop = 0, `+countText("theirs", "history 1")+` === 1)`)
		var texts []string
		b.eval(`Array.from(document.querySelectorAll('#list li.msg[data-id] .text')).map(e => e.textContent)`, &texts)
		if len(texts) != n {
			t.Fatalf("after scrolling up B shows %d messages, want %d", len(texts), n)
		}
		for i, s := range texts {
			if want := fmt.Sprintf("history %d", i+1); s != want {
				t.Fatalf("message %d is %q, want %q", i, s, want)
			}
		}
		b.until("the beginning of the room", `document.getElementById('older').textContent.includes('beginning')`)

		// A reader who scrolled up stays where they are and gets a hint.
		var top float64
		b.eval(`document.getElementById('scroller').scrollTop`, &top)
		c.Send(map[string]any{"text": true, "content": "fresh news"})
		b.until("the new-messages hint", `!document.getElementById('new-hint').hidden && document.getElementById('new-count').textContent === '1' && `+countText("theirs", "fresh news")+` === 1`)
		var now float64
		b.eval(`document.getElementById('scroller').scrollTop`, &now)
		if now != top {
			t.Errorf("the view moved from %v to %v while the reader was reading older messages", top, now)
		}
		b.do(chromedp.Click(chromedp.CSS("#new-hint")))
		b.until("at the bottom, hint gone", `(() => { const s = document.getElementById('scroller');
			return document.getElementById('new-hint').hidden && s.scrollHeight - s.scrollTop - s.clientHeight < 4; })()`)
	})

	t.Run("phone width", func(t *testing.T) {
		on(t, a, b)
		var wide int
		b.eval(`document.documentElement.scrollWidth`, &wide)
		if wide > 360 {
			t.Errorf("page is %d px wide on a 360 px screen", wide)
		}
	})

	t.Run("session", func(t *testing.T) {
		on(t, a, b)
		// Sockets open with one-time tickets: the skey is in no URL.
		for _, p := range []*tab{a, b} { // b has reconnected too
			var urls []string
			var skey string
			p.eval(`window.__wsURLs`, &urls)
			p.eval(`JSON.parse(localStorage.getItem('panda.session')).skey`, &skey)
			if len(urls) == 0 || skey == "" {
				t.Fatalf("%s: socket URLs %q, skey %q", p.name, urls, skey)
			}
			for _, u := range urls {
				if !strings.Contains(u, "ticket=") || strings.Contains(u, skey) || strings.Contains(strings.ToLower(u), "skey") {
					t.Errorf("%s: socket URL %s: want a ticket and no skey", p.name, u)
				}
			}
		}
		// The stored session is reused after a reload.
		b.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#input")))
		b.until("connected with the stored session", `window.__panda.state().connected && window.__panda.state().me.nickName === 'Robert'`)
		// An invalid session leads back to sign-in.
		b.eval(`localStorage.setItem('panda.session', JSON.stringify({id: 'nope', skey: 'nope'}))`, nil)
		b.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#signin-name")))
	})

	t.Run("sign out", func(t *testing.T) {
		on(t, a, b)
		var sess chattest.Session
		a.eval(`(function () { var s = JSON.parse(localStorage.getItem('panda.session')); return {ID: s.id, Skey: s.skey}; })()`, &sess)
		if code := env.Do(sess, "GET", "/me", nil, nil); code != 200 {
			t.Fatalf("/me before signing out: HTTP %d", code)
		}
		a.eval(`document.getElementById('signout').click()`, nil)
		a.do(chromedp.WaitVisible(chromedp.CSS("#signin-name")))
		// The server has ended the session, not just the page forgotten it.
		deadline := time.Now().Add(wait)
		for env.Do(sess, "GET", "/me", nil, nil) != 401 {
			if time.Now().After(deadline) {
				t.Fatal("the session still works after signing out")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	on(t, a, b)
	a.clean()
	b.clean()
}
