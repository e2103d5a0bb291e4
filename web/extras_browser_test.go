package web_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/server"
)

// msgSel is a CSS selector of the confirmed message of this tab that shows
// exactly text (it waits for one, and fails the test when none comes).
func (b *tab) msgSel(text string) string {
	b.t.Helper()
	return fmt.Sprintf(`#list li.msg[data-id="%d"]`, b.msgID(text))
}

// msgID is the id of the confirmed message of this tab that shows exactly
// text (it waits for one, and fails the test when none comes).
func (b *tab) msgID(text string) int {
	b.t.Helper()
	b.until("the message "+text, `Array.from(document.querySelectorAll('#list li.msg[data-id] .text')).some(e => e.textContent === `+js(text)+`)`)
	var id int
	b.eval(fmt.Sprintf(`(() => { const e = Array.from(document.querySelectorAll('#list li.msg[data-id] .text')).find(e => e.textContent === %s);
		return e ? +e.closest('li').dataset.id : 0; })()`, js(text)), &id)
	if id == 0 {
		b.t.Fatalf("%s: no message %q\n%s", b.name, text, b.debug())
	}
	return id
}

// hover moves the mouse over the bubble of the message sel, as a reader
// pointing at it does.
func (b *tab) hover(sel string) {
	b.t.Helper()
	var pt struct{ X, Y float64 }
	b.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%s);
		e.scrollIntoView({block: 'center'});
		const r = e.getBoundingClientRect(); return {X: r.left + r.width / 2, Y: r.top + r.height / 2}; })()`, js(sel+" .bubble")), &pt)
	b.do(chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, pt.X, pt.Y))
}

// chips is a JavaScript expression: the reaction chips under the message sel as "emoji count[ mine]".
func chips(sel string) string {
	return fmt.Sprintf(`Array.from(document.querySelectorAll(%s)).map(c => c.querySelector('.e').textContent + ' ' + c.querySelector('.n').textContent + (c.classList.contains('mine') ? ' mine' : '')).join(',')`,
		js(sel+" .reactions .chip"))
}

// TestBrowserExtras drives two browsers through recall, reactions, typing,
// @mentions and unread badges against a real server, with a reconnect that
// replays across a recall and a reaction, and a reload that reads both back
// from /history.
func TestBrowserExtras(t *testing.T) {
	browser := startBrowser(t)
	env := chattest.Start(t, server.Config{DevLogin: true, Rate: actors.Rate{Off: true}})

	const room = "fun"
	a := newTab(t, browser, "A", 1100, 800)
	b := newTab(t, browser, "B", 420, 760)
	a.signIn(env.URL, room, "Alice")
	b.signIn(env.URL, room, "Bob")
	a.until("online count 2", `document.getElementById('online-count').textContent === '2'`)
	for _, p := range []*tab{a, b} {
		var urls []string
		p.eval(`window.__wsURLs`, &urls)
		if len(urls) == 0 || !strings.Contains(urls[len(urls)-1], "v=2") {
			t.Fatalf("%s: socket URLs %q: want v=2", p.name, urls)
		}
	}
	a.say("Hello Bob, react to this")
	a.say("This one goes away")
	b.until("Alice's messages", countText("theirs", "This one goes away")+` === 1`)
	b.say("Hi Alice")
	a.until("Bob's message", countText("theirs", "Hi Alice")+` === 1`)

	t.Run("typing", func(t *testing.T) {
		on(t, a, b)
		// Alice keeps typing (her typing notices are at most 3 s apart, also
		// after the messages she just sent) until Bob sees it.
		a.do(chromedp.SendKeys(chromedp.CSS("#input"), "I am typing"))
		shown := `document.getElementById('typing').textContent === 'Alice is typing…' && !document.getElementById('typing').hidden`
		for deadline := time.Now().Add(wait); ; {
			var ok bool
			b.eval(shown, &ok)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("B never shows Alice typing\n%s", b.debug())
			}
			a.do(chromedp.SendKeys(chromedp.CSS("#input"), "."))
			time.Sleep(300 * time.Millisecond)
		}
		a.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('input').value = 'I am typing'`), enter)
		b.until("the message, and no more typing line", countText("theirs", "I am typing")+` === 1 && document.getElementById('typing').hidden`)
		var own string
		a.eval(`document.getElementById('typing').textContent`, &own)
		if own != "" {
			t.Errorf("A shows its own typing: %q", own)
		}
		// Someone whose name is markup: shown as text.
		evil := env.DevLogin(`<img src=x onerror=alert(1)>`)
		c := env.Dial(evil, "room="+room+"&v=2")
		c.NextOfType("system")
		c.Send(map[string]any{"typing": true})
		b.until("the name as text", `document.getElementById('typing').textContent === '<img src=x onerror=alert(1)> is typing…'`)
		var imgs int
		b.eval(`document.querySelectorAll('#typing *').length`, &imgs)
		if imgs != 0 {
			t.Errorf("%d elements made from a nickname", imgs)
		}
		c.Discard()
	})

	t.Run("mention", func(t *testing.T) {
		on(t, a, b)
		b.do(chromedp.SendKeys(chromedp.CSS("#input"), "@Ali"))
		b.until("Alice offered", `!document.getElementById('mentions').hidden && Array.from(document.querySelectorAll('#mentions li .nick')).map(e => e.textContent).join() === 'Alice'`)
		b.do(enter) // picks the name, does not send
		var value string
		b.eval(`document.getElementById('input').value`, &value)
		if value != "@Alice " {
			t.Fatalf("composer after picking = %q, want %q", value, "@Alice ")
		}
		b.do(chromedp.SendKeys(chromedp.CSS("#input"), "look here"), enter)
		a.until("the message at Alice", countText("theirs", "@Alice look here")+` === 1`)
		b.until("Bob's own confirmed", countText("mine", "@Alice look here")+` === 1`)
		sel := a.msgSel("@Alice look here")
		a.until("highlighted for Alice", fmt.Sprintf(`document.querySelector(%s).classList.contains('mentioned') &&
			document.querySelector(%s).textContent === '@Alice'`, js(sel), js(sel+" .text .mention.me")))
		bsel := b.msgSel("@Alice look here")
		var info struct{ Mentioned, Me bool }
		b.eval(fmt.Sprintf(`({Mentioned: document.querySelector(%s).classList.contains('mentioned'), Me: !!document.querySelector(%s)})`, js(bsel), js(bsel+" .mention.me")), &info)
		if info.Mentioned || info.Me {
			t.Errorf("B's own message shows as mentioning B: %+v", info)
		}
		b.until("the mention styled on B's side too", fmt.Sprintf(`document.querySelector(%s) !== null`, js(bsel+" .text .mention")))
		// No mention for a name that was typed but not picked.
		a.say("@Bob plain text")
		b.until("the message at Bob", countText("theirs", "@Bob plain text")+` === 1`)
		sel = b.msgSel("@Bob plain text")
		var mentioned bool
		b.eval(fmt.Sprintf(`document.querySelector(%s).classList.contains('mentioned')`, js(sel)), &mentioned)
		if mentioned {
			t.Errorf("a name typed without picking it counts as a mention")
		}
	})

	t.Run("react", func(t *testing.T) {
		on(t, a, b)
		sel := b.msgSel("Hello Bob, react to this")
		b.hover(sel)
		b.do(chromedp.Click(chromedp.CSS(sel + ` .tools .react-btn`))) // the first emoji
		first := "👍"
		b.until("B's reaction", chips(sel)+` === '`+first+` 1 mine'`)
		asel := a.msgSel("Hello Bob, react to this")
		a.until("Bob's reaction at Alice", chips(asel)+` === '`+first+` 1'`)
		// Alice adds hers with the chip; Bob takes his back with his.
		a.do(chromedp.Click(chromedp.CSS(asel + " .reactions .chip")))
		a.until("two", chips(asel)+` === '`+first+` 2 mine'`)
		b.until("two at Bob", chips(sel)+` === '`+first+` 2 mine'`)
		b.do(chromedp.Click(chromedp.CSS(sel + " .reactions .chip")))
		b.until("Bob's taken back", chips(sel)+` === '`+first+` 1'`)
		a.until("one left at Alice", chips(asel)+` === '`+first+` 1 mine'`)
	})

	t.Run("recall", func(t *testing.T) {
		on(t, a, b)
		// Only one's own messages offer recall.
		bsel := b.msgSel("This one goes away")
		b.hover(bsel)
		b.until("B's actions on Alice's message", `document.querySelector(`+js(bsel+" .tools")+`) !== null`)
		var n int
		b.eval(`document.querySelectorAll('#list .tools .recall-btn').length`, &n)
		if n != 0 {
			t.Errorf("Bob is offered to recall Alice's message")
		}
		sel := a.msgSel("This one goes away")
		a.hover(sel)
		a.do(chromedp.Click(chromedp.CSS(sel + " .tools .recall-btn")))
		a.until("the recall line at Alice", `document.querySelector(`+js(sel+" .recall-note")+`)?.textContent === 'You recalled a message'`)
		b.until("the recall line at Bob", `document.querySelector(`+js(bsel+" .recall-note")+`)?.textContent === 'Alice recalled a message'`)
		b.until("the text gone", countText("theirs", "This one goes away")+` === 0`)
	})

	t.Run("replay across a recall and a reaction", func(t *testing.T) {
		on(t, a, b)
		b.eval(`window.__panda.dropSocket(true)`, nil)
		b.until("offline", `document.getElementById('conn').dataset.state === 'offline'`)
		a.say("Gone while Bob was away")
		a.until("sent", countText("mine", "Gone while Bob was away")+` === 1`)
		sel := a.msgSel("Gone while Bob was away")
		a.hover(sel)
		a.do(chromedp.Click(chromedp.CSS(sel + " .tools .recall-btn")))
		a.until("recalled", `document.querySelector(`+js(sel+" .recall-note")+`) !== null`)
		hi := a.msgSel("Hi Alice")
		a.hover(hi)
		a.do(chromedp.Click(chromedp.CSS(hi + ` .tools .react-btn:nth-child(3)`)))
		third := "🎉"
		a.until("Alice's reaction", chips(hi)+` === '`+third+` 1 mine'`)
		b.eval(`window.__panda.resume()`, nil)
		b.until("back", `document.getElementById('conn').dataset.state === 'online'`)
		bhi := b.msgSel("Hi Alice")
		b.until("the reaction replayed", chips(bhi)+` === '`+third+` 1'`)
		b.until("the recall replayed", `Array.from(document.querySelectorAll('#list li.msg.recalled .recall-note')).filter(e => e.textContent === 'Alice recalled a message').length === 2`)
		b.until("and its text never shown", countText("theirs", "Gone while Bob was away")+` === 0`)
	})

	t.Run("history", func(t *testing.T) {
		on(t, a, b)
		b.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#input")))
		b.until("connected", `window.__panda.state().connected`)
		b.until("recalled messages in place", `document.querySelectorAll('#list li.msg.recalled').length === 2`)
		b.until("reactions from /history", chips(b.msgSel("Hello Bob, react to this"))+` === '👍 1' && `+chips(b.msgSel("Hi Alice"))+` === '🎉 1'`)
		a.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#input")))
		a.until("connected", `window.__panda.state().connected`)
		a.until("Alice's own reactions marked after a reload", chips(a.msgSel("Hello Bob, react to this"))+` === '👍 1 mine'`)
		a.until("the mention still highlighted", `document.querySelector(`+js(a.msgSel("@Alice look here"))+`).classList.contains('mentioned')`)
		var texts []string
		a.eval(`Array.from(document.querySelectorAll('#list li.msg.recalled')).map(li => li.textContent)`, &texts)
		if strings.Contains(strings.Join(texts, "|"), "goes away") {
			t.Errorf("a recalled message's text came back: %q", texts)
		}
	})

	t.Run("unread", func(t *testing.T) {
		on(t, a, b)
		b.eval(`location.hash = '#/room/quiet'`, nil)
		b.until("in the quiet room", `window.__panda.state().room === 'quiet' && window.__panda.state().connected`)
		// The room has let Bob go (else what it sends is delivered to him: read).
		a.until("Bob gone", `Array.from(document.querySelectorAll('#list li.notice')).some(li => li.textContent === 'Bob left')`)
		a.say("unread one")
		a.say("unread two")
		a.until("sent", countText("mine", "unread two")+` === 1`)
		b.do(chromedp.Click(chromedp.CSS("#room-btn")), chromedp.WaitVisible(chromedp.CSS("#rooms-name")))
		b.until("a badge on the room with news", `document.querySelector('#rooms-list button[data-room="fun"] .badge')?.textContent === '2'`)
		b.until("and on the switcher", `document.getElementById('rooms-badge').textContent === '2' && !document.getElementById('rooms-badge').hidden`)
		var quiet int
		b.eval(`document.querySelectorAll('#rooms-list button[data-room="quiet"] .badge').length`, &quiet)
		if quiet != 0 {
			t.Errorf("the room on screen has a badge")
		}
		b.do(chromedp.Click(chromedp.CSS(`#rooms-list button[data-room="fun"]`)))
		b.until("back in fun with the news", `window.__panda.state().room === 'fun' && `+countText("theirs", "unread two")+` === 1`)
		b.until("read posted", `window.__panda.state().read >= window.__panda.state().seenId && window.__panda.state().seenId > 0`)
		// The server knows: GET /rooms has fun read up to its last id.
		var sess chattest.Session
		b.eval(`(function () { var s = JSON.parse(localStorage.getItem('panda.session')); return {ID: s.id, Skey: s.skey}; })()`, &sess)
		deadline := time.Now().Add(wait)
		for {
			var raw json.RawMessage
			if code := env.Do(sess, "GET", "/rooms", nil, &raw); code != 200 {
				t.Fatalf("GET /rooms: HTTP %d", code)
			}
			fun, ok := roomEntry(t, raw, "fun")
			if ok && fun.LastID > 0 && fun.ReadID >= fun.LastID {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET /rooms after reading fun: %s", raw)
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.eval(`location.hash = '#/room/quiet'`, nil)
		b.until("in quiet again", `window.__panda.state().room === 'quiet' && window.__panda.state().connected`)
		b.do(chromedp.Click(chromedp.CSS("#room-btn")), chromedp.WaitVisible(chromedp.CSS("#rooms-name")))
		b.until("the list", `document.querySelector('#rooms-list button[data-room="fun"]') !== null`)
		var badges int
		b.eval(`document.querySelectorAll('#rooms-list .badge').length + (document.getElementById('rooms-badge').hidden ? 0 : 1)`, &badges)
		if badges != 0 {
			t.Errorf("%d badges left after every room was read", badges)
		}
	})

	on(t, a, b)
	a.clean()
	b.clean()
}

type roomState struct {
	Room   string `json:"room"`
	LastID int64  `json:"lastId"`
	ReadID int64  `json:"readId"`
}

// roomEntry finds a room in a GET /rooms answer (a list, or {"rooms":[...]}).
func roomEntry(t *testing.T, raw json.RawMessage, name string) (roomState, bool) {
	t.Helper()
	var list []roomState
	if err := json.Unmarshal(raw, &list); err != nil {
		var wrapped struct{ Rooms []roomState }
		if err := json.Unmarshal(raw, &wrapped); err != nil {
			t.Fatalf("GET /rooms: %s: %v", raw, err)
		}
		list = wrapped.Rooms
	}
	for _, r := range list {
		if r.Room == name {
			return r, true
		}
	}
	return roomState{}, false
}
