// Panda chat room, the browser client. Plain JavaScript, no build step.
//
// Invariants:
//   - user data reaches the DOM only through textContent, attributes that cannot
//     run code, or URLs checked by safeURL (http/https only);
//   - messages are kept by id: a message that arrives twice (history page, replay
//     after a reconnect, live frame) is shown once, in id order;
//   - the socket always reconnects with since=<highest id seen>, so a dropped
//     connection loses nothing;
//   - the socket opts in to recall, reactions, typing and mentions (v=2); the
//     events take ids of the room's sequence, so since counts them too, and
//     the logic they share with the mini-program is in extras.js.
(function () {
  'use strict';

  var X = window.PandaExtras;

  var MAGIC = 'F2C224D4-2BCE-4C64-AF9F-A6D872000D1A';
  var SESSION_KEY = 'panda.session';
  var ROOMS_KEY = 'panda.rooms';
  var ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
  var PAGE = 30;              // history page size
  var HOLE_MAX = 1000;        // most messages paged into one replay hole
  var maxShown = 1000;        // messages kept while the reader is at the live end (older ones page back in)
  var GROUP_MS = 5 * 60 * 1000; // messages of one sender closer than this form a group
  var NEAR_BOTTOM = 80;       // px: "the reader is at the bottom"
  var BACKOFF_MIN = 500, BACKOFF_MAX = 15000;
  var DEFAULT_AVATAR = '/avatar/default.png';

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  // ---------------------------------------------------------------- state

  var S = {
    session: null,   // {id, skey}
    me: null,        // {uid, nickName, avatarUrl}
    room: 'lobby',
    ws: null,
    wsOpen: false,
    gen: 0,          // bumps on every room change; stale callbacks check it
    attempt: 0,      // reconnect attempts since the last good connection
    timer: 0,        // reconnect timer
    hold: false,     // reconnecting paused (test hook)
    lastId: 0,       // highest message id shown
    seenId: 0,       // highest id the room sent (messages and events): since=
    holeFrom: null,  // after a rejoin until its first id: the since it asked with
    oldestId: 0,     // lowest message id shown
    noMore: false,   // history exhausted
    loadingOlder: false,
    byId: new Map(), // id -> <li>
    msgs: new Map(), // id -> the message as it came
    xs: new Map(),   // id -> its recall and reaction state (extras.js)
    members: X.createMembers(), // the room's people this client knows of (for @)
    typists: X.createTypists(),
    typingSender: X.createTypingSender(),
    readMarker: X.createReadMarker(1000),
    unreadRooms: X.createUnread(),
    clock: X.createClock(),
    picked: [],      // members picked with @ for the message in the box
    mention: null,   // the open @ list: {q, list, active}
    toolsFor: 0,     // the message the actions bar is on
    pending: new Map(), // cid -> <li> of a message not yet confirmed
    cidSeq: 0,
    stick: true,     // keep the view at the bottom
    unread: 0,
    online: 0
  };

  // ---------------------------------------------------------------- helpers

  function loadSession() {
    try {
      var s = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
      if (s && typeof s.id === 'string' && typeof s.skey === 'string') return s;
    } catch (e) { /* unreadable: sign in again */ }
    return null;
  }
  function saveSession(s) {
    try { localStorage.setItem(SESSION_KEY, JSON.stringify(s)); } catch (e) { /* private mode */ }
  }
  function clearSession() {
    try { localStorage.removeItem(SESSION_KEY); } catch (e) { /* ignore */ }
  }

  // safeURL returns an absolute http(s) URL, or '' for anything else
  // (javascript:, data:, malformed...).
  function safeURL(u) {
    if (typeof u !== 'string' || !u) return '';
    try {
      var x = new URL(u, location.href);
      return x.protocol === 'http:' || x.protocol === 'https:' ? x.href : '';
    } catch (e) { return ''; }
  }

  function authHeaders(h) {
    h = h || {};
    if (S.session) { h['X-WX-Id'] = S.session.id; h['X-WX-Skey'] = S.session.skey; }
    return h;
  }

  // api performs a JSON request; a refused session leads back to sign-in.
  // onResponse(r), when given, sees the response (its headers) first.
  function api(method, path, body, onResponse) {
    var opt = { method: method, headers: authHeaders({ 'Accept': 'application/json' }), cache: 'no-store' };
    if (body !== undefined) {
      opt.headers['Content-Type'] = 'application/json';
      opt.body = JSON.stringify(body);
    }
    return fetch(path, opt).then(function (r) {
      if (onResponse) onResponse(r);
      return r.text().then(function (t) {
        var j = null;
        try { j = t ? JSON.parse(t) : null; } catch (e) { /* not JSON */ }
        if (r.status === 401 && j && j.error === 'ERR_INVALID_SESSION') {
          signOut('Your session has expired. Please sign in again.');
          throw new Error('session expired');
        }
        if (!r.ok) {
          var err = new Error((j && j.message) || ('HTTP ' + r.status));
          err.status = r.status;
          throw err;
        }
        return j;
      });
    });
  }

  var toastTimer = 0;
  function toast(msg) {
    var t = $('toast');
    t.textContent = msg;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.hidden = true; }, 4000);
  }

  function setAvatar(img, url) {
    img.referrerPolicy = 'no-referrer';
    img.src = safeURL(url) || DEFAULT_AVATAR;
    img.onerror = function () { img.onerror = null; img.src = DEFAULT_AVATAR; };
  }

  var timeFmt = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
  var fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
  var dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
  var dayYearFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'long', year: 'numeric' });

  function dayKey(ms) { var d = new Date(ms); return d.getFullYear() + '-' + d.getMonth() + '-' + d.getDate(); }
  function dayLabel(ms) {
    var d = new Date(ms), now = new Date();
    var today = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
    var that = new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
    var days = Math.round((today - that) / 86400000);
    if (days === 0) return 'Today';
    if (days === 1) return 'Yesterday';
    if (days > 0 && days < 7) return dayFmt.format(d);
    return d.getFullYear() === now.getFullYear() ? dayFmt.format(d) : dayYearFmt.format(d);
  }

  // appendLinkified puts text into parent, turning http(s) URLs into safe anchors.
  var URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  function appendLinkified(parent, text) {
    var last = 0, m;
    URL_RE.lastIndex = 0;
    while ((m = URL_RE.exec(text)) !== null) {
      var raw = m[0].replace(/[.,;:!?)\]}'"]+$/, '');
      var href = safeURL(raw);
      if (!href) continue;
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      var a = el('a', null, raw);
      a.href = href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer nofollow';
      parent.appendChild(a);
      last = m.index + raw.length;
      URL_RE.lastIndex = last;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  // ---------------------------------------------------------------- views

  function showSignin(msg) {
    $('app').hidden = true;
    $('signin').hidden = false;
    var e = $('signin-error');
    e.hidden = !msg;
    e.textContent = msg || '';
    $('signin-go').disabled = false;
    setTimeout(function () { $('signin-name').focus(); }, 0);
  }

  function showApp() {
    $('signin').hidden = true;
    $('app').hidden = false;
    renderMe();
  }

  function renderMe() {
    if (!S.me) return;
    setAvatar($('me-avatar'), S.me.avatarUrl);
    $('me-btn').title = S.me.nickName + ' — your profile';
  }

  // ---------------------------------------------------------------- sign in / out

  function signIn(nick) {
    $('signin-go').disabled = true;
    fetch('/login/dev', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ nickName: nick })
    }).then(function (r) {
      if (r.status === 404) throw new Error('Browser sign-in is not enabled on this server.');
      return r.json().then(function (j) {
        if (!r.ok || !j || !j.session) throw new Error((j && j.message) || ('Sign-in failed (HTTP ' + r.status + ')'));
        return j;
      });
    }).then(function (j) {
      S.session = { id: j.session.id, skey: j.session.skey };
      S.me = j.userInfo || null;
      saveSession(S.session);
      start();
    }).catch(function (err) {
      showSignin(err.message === 'Failed to fetch' ? 'Cannot reach the server. Try again.' : err.message);
    });
  }

  function signOut(msg) {
    S.session = null;
    S.me = null;
    clearSession();
    leaveRoom();
    closeDialogs();
    showSignin(msg);
  }

  // start checks the stored session, then enters the room of the URL.
  function start() {
    api('GET', '/me').then(function (me) {
      S.me = me;
      showApp();
      enterRoom(roomFromHash());
    }).catch(function (err) {
      if (!S.session) return; // signOut has run
      if (S.me) { showApp(); enterRoom(roomFromHash()); return; } // offline: the socket will retry
      showSignin('Cannot reach the server: ' + err.message);
    });
  }

  // ---------------------------------------------------------------- rooms

  function roomFromHash() {
    var m = /^#\/room\/([^/?#]+)/.exec(location.hash);
    var r = m ? decodeURIComponent(m[1]) : '';
    return ROOM_RE.test(r) ? r : 'lobby';
  }

  function recentRooms() {
    try {
      var l = JSON.parse(localStorage.getItem(ROOMS_KEY) || '[]');
      return Array.isArray(l) ? l.filter(function (r) { return ROOM_RE.test(r); }) : [];
    } catch (e) { return []; }
  }
  function rememberRoom(r) {
    var l = recentRooms().filter(function (x) { return x !== r; });
    l.unshift(r);
    try { localStorage.setItem(ROOMS_KEY, JSON.stringify(l.slice(0, 8))); } catch (e) { /* ignore */ }
  }

  function leaveRoom() {
    S.gen++;
    clearTimeout(S.timer);
    if (S.ws) {
      var ws = S.ws;
      S.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try { ws.close(1000); } catch (e) { /* ignore */ }
    }
    S.wsOpen = false;
  }

  function enterRoom(room) {
    leaveRoom();
    S.room = room;
    S.lastId = 0;
    S.seenId = 0;
    S.holeFrom = null;
    S.oldestId = 0;
    S.noMore = false;
    S.loadingOlder = false;
    S.byId = new Map();
    S.msgs = new Map();
    S.xs = new Map();
    S.members = X.createMembers();
    S.typists.clear();
    S.readMarker = X.createReadMarker(1000);
    S.picked = [];
    S.toolsFor = 0;
    closeMention();
    renderTyping();
    S.pending = new Map();
    S.stick = true;
    S.attempt = 0;
    setUnread(0);
    setOnline(0);
    $('list').textContent = '';
    $('older').textContent = '';
    $('room-name').textContent = room;
    $('input').placeholder = 'Message #' + room;
    S.hiddenUnread = 0;
    setTitle();
    if (location.hash !== '#/room/' + room) history.replaceState(null, '', '#/room/' + room);
    rememberRoom(room);
    renderRoomsBadge();
    refreshRooms();
    var gen = S.gen;
    setConn('connecting');
    // Newest page first, then the socket replays whatever came after it.
    loadPage(0).then(function () {
      if (gen !== S.gen) return;
      connect();
    }, function () {
      if (gen !== S.gen) return;
      connect();
    });
  }

  // loadPage fetches the page just below `before` (0: the newest page), with
  // recalled messages as such and reactions (v=2). X-Last-Id is the room's
  // last id when the page was read: the page holds every event up to it, so
  // the socket starts there (newest page) and only later events apply.
  // historyPage(before) → {msgs, horizon}: the page just below `before` (0:
  // the newest), and X-Last-Id, the room's last id when it was read.
  function historyPage(before) {
    var q = '/history?room=' + encodeURIComponent(S.room) + '&limit=' + PAGE + (before ? '&before=' + before : '') + '&v=2';
    var horizon = 0;
    return api('GET', q, undefined, function (r) {
      var n = Number(r.headers.get('X-Last-Id'));
      if (n > 0 && Math.floor(n) === n) horizon = n;
    }).then(function (msgs) {
      return { msgs: Array.isArray(msgs) ? msgs : [], horizon: horizon };
    });
  }

  function loadPage(before) {
    var gen = S.gen;
    S.loadingOlder = true;
    $('older').textContent = 'Loading…';
    return historyPage(before).then(function (page) {
      if (gen !== S.gen) return;
      S.loadingOlder = false;
      var msgs = page.msgs, horizon = page.horizon;
      if (msgs.length < PAGE) S.noMore = true;
      var sc = $('scroller');
      var fromBottom = sc.scrollHeight - sc.scrollTop;
      if (!before) noteSeen(horizon);
      addMessages(msgs, { history: true, horizon: horizon });
      if (before) {
        sc.scrollTop = sc.scrollHeight - fromBottom; // keep what the reader looks at in place
      } else {
        scrollToBottom();
      }
      renderOlder();
      maybeLoadOlder();
    }, function (err) {
      if (gen !== S.gen) return;
      S.loadingOlder = false;
      $('older').textContent = '';
      throw err;
    });
  }

  // fillHole pages the ids a capped replay left out (from+1 .. to-1) from
  // /history, newest first: the server replays only the newest ones after a
  // long absence. A hole above HOLE_MAX messages keeps its older part; a
  // reload shows it.
  function fillHole(from, to) {
    var gen = S.gen, before = to, got = 0;
    function step() {
      if (gen !== S.gen || before <= from + 1) return;
      if (got >= HOLE_MAX) { toast('Some older messages are not shown; reload to see them.'); return; }
      historyPage(before).then(function (page) {
        var msgs = page.msgs;
        if (gen !== S.gen || !msgs.length) return;
        var inHole = msgs.filter(function (m) { return m && m.id > from; });
        addMessages(inHole, { history: true, horizon: page.horizon });
        got += inHole.length;
        before = msgs[0].id;
        if (inHole.length === msgs.length) step();
      }, function () { toast('Some messages could not be loaded; reload to see them.'); });
    }
    step();
  }

  function renderOlder() {
    var o = $('older');
    o.textContent = '';
    if (S.noMore) {
      o.appendChild(el('span', 'begin', S.byId.size ? 'This is the beginning of #' + S.room : 'No messages yet in #' + S.room + ' — say hello!'));
    }
  }

  // maybeLoadOlder loads the next page when the reader is at the top, or when
  // the messages do not fill the screen yet.
  function maybeLoadOlder() {
    if (S.noMore || S.loadingOlder || !S.oldestId) return;
    var sc = $('scroller');
    if (sc.scrollTop < 120 || sc.scrollHeight <= sc.clientHeight) {
      loadPage(S.oldestId).catch(function () { /* retried on the next scroll */ });
    }
  }

  // ---------------------------------------------------------------- socket

  function setConn(state, text) {
    var c = $('conn');
    c.dataset.state = state;
    $('conn-text').textContent = text || ({ connecting: 'Connecting…', online: 'Connected', offline: 'Offline' })[state] || state;
    $('retry').hidden = state !== 'offline';
    document.body.dataset.conn = state;
  }

  function setTitle() {
    var n = S.hiddenUnread || 0;
    document.title = (n ? '(' + n + ') ' : '') + '#' + S.room + ' · Panda chat room';
  }

  function setOnline(n) {
    S.online = n;
    $('online-count').textContent = String(n);
  }

  // connect asks for a one-time ticket and opens the socket with it: a browser
  // cannot set headers on a WebSocket, and the skey must never be in a URL
  // (URLs end up in proxy logs and browser history).
  function connect() {
    if (!S.session) return;
    clearTimeout(S.timer);
    var gen = S.gen;
    setConn('connecting', S.attempt ? 'Reconnecting…' : 'Connecting…');
    api('POST', '/ws-ticket').then(function (t) {
      if (gen !== S.gen || !S.session || S.ws) return;
      if (!t || typeof t.ticket !== 'string') throw new Error('no ticket');
      openSocket(gen, t.ticket);
    }).catch(function () {
      if (gen !== S.gen || !S.session || S.ws) return; // signed out (401), or another attempt won
      scheduleReconnect();
    });
  }

  function openSocket(gen, ticket) {
    var proto = location.protocol === 'https:' ? 'wss://' : 'ws://';
    var url = proto + location.host + '/ws?room=' + encodeURIComponent(S.room) +
      '&ticket=' + encodeURIComponent(ticket) +
      '&since=' + S.seenId + '&presence=1&v=2';
    var ws;
    try { ws = new WebSocket(url); } catch (e) { scheduleReconnect(); return; }
    S.ws = ws;
    ws.onopen = function () { /* the system frame says we are in */ };
    ws.onmessage = function (ev) {
      if (gen !== S.gen || ws !== S.ws) return;
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f && typeof f === 'object') onFrame(f);
    };
    ws.onclose = function (ev) {
      if (ws !== S.ws) return;
      S.ws = null;
      S.wsOpen = false;
      failPending('Not sent: the connection dropped.');
      // A connection that lasted a while resets the backoff; one the server
      // keeps closing right away does not, so retries slow down.
      if (S.openedAt && Date.now() - S.openedAt > 10000) S.attempt = 0;
      S.openedAt = 0;
      if (gen !== S.gen || !S.session) return;
      if (ev.code === 1008 && S.sessionRefused) return;
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    clearTimeout(S.timer);
    if (S.hold) { setConn('offline', 'Offline'); return; }
    var d = Math.min(BACKOFF_MAX, BACKOFF_MIN * Math.pow(2, S.attempt));
    d = Math.round(d / 2 + Math.random() * d / 2); // jitter: clients that dropped together do not return together
    S.attempt++;
    var until = Date.now() + d;
    var tick = function () {
      var left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) { connect(); return; }
      setConn('offline', 'Offline · retrying in ' + left + ' s');
      S.timer = setTimeout(tick, Math.min(1000, until - Date.now()));
    };
    tick();
  }

  function reconnectNow() {
    if (!S.session || S.ws || S.hold) return;
    S.attempt = 0;
    connect();
  }

  function onFrame(f) {
    if (f[MAGIC] || f.error === 'ERR_INVALID_SESSION') {
      S.sessionRefused = true;
      signOut('Your session has expired. Please sign in again.');
      S.sessionRefused = false;
      return;
    }
    if (S.holeFrom !== null && typeof f.id === 'number') { // the first id after a rejoin
      var from = S.holeFrom;
      S.holeFrom = null;
      if (f.id > from + 1) fillHole(from, f.id);
    }
    switch (f.type) {
      case 'system':
        S.holeFrom = S.seenId > 0 ? S.seenId : null; // what the replay starts after
        S.wsOpen = true;
        S.openedAt = Date.now();
        setConn('online');
        if (typeof f.num === 'number') setOnline(f.num);
        return;
      case 'user':
      case 'remote':
        if (typeof f.number === 'number') setOnline(f.number);
        if (f.type === 'user' && f.cid) S.clock.observe(f.time); // an echo is surely live; a replayed frame may be old
        if (S.typists.remove(f.uid)) renderTyping(); // their message is here
        addMessages([f], { live: true });
        return;
      case 'recall':
      case 'reaction':
        onEvent(f);
        return;
      case 'typing':
        onTyping(f);
        return;
      case 'presence':
        if (typeof f.num === 'number') setOnline(f.num);
        if (f.event === 'join') S.members.see(f.uid, f.nickName);
        presenceNotice(f);
        return;
      case 'error':
        onErrorFrame(f);
        return;
    }
  }

  function onErrorFrame(f) {
    var why = f.message || f.error || 'error';
    if (f.error === 'ERR_BAD_ROOM') {
      toast('That room name is not allowed.');
      location.hash = '#/room/lobby';
      return;
    }
    if (f.cid && S.pending.has(f.cid)) {
      markFailed(S.pending.get(f.cid), f.error === 'ERR_RATE_LIMITED' ? 'Not sent: slow down a little.' : 'Not sent: ' + why);
      return;
    }
    if (f.error === 'ERR_NOT_ALLOWED') why = 'Only your own messages can be recalled, within 2 minutes.';
    if (f.error === 'ERR_RATE_LIMITED') why = 'Slow down a little.';
    toast(why);
  }

  // ---------------------------------------------------------------- recall, reactions, typing

  function noteSeen(id) {
    if (typeof id === 'number' && id > S.seenId) S.seenId = id;
  }

  // onEvent applies a recall or a reaction to the message it targets. A
  // message this page does not hold gets its state from /history when it is
  // paged in.
  function onEvent(f) {
    if (!X.isEvent(f)) return;
    noteSeen(f.id);
    var x = S.xs.get(f.target);
    if (x) {
      var wasNear = nearBottom();
      if (X.applyEvent(x, f, S.me && S.me.uid)) rerender(f.target);
      if (wasNear) scrollToBottom();
    }
    markRead();
  }

  function onTyping(f) {
    if (typeof f.uid !== 'string' || (S.me && f.uid === S.me.uid)) return;
    S.members.see(f.uid, f.nickName);
    S.typists.add(f.uid, f.nickName, Date.now());
    renderTyping();
  }

  var typingTimer = 0;
  function renderTyping() {
    clearTimeout(typingTimer);
    var now = Date.now();
    var label = S.typists.label(now);
    var t = $('typing');
    t.textContent = label;
    t.hidden = !label;
    var next = S.typists.nextChange(now);
    if (next >= 0) typingTimer = setTimeout(renderTyping, next + 20);
  }

  // typed announces "typing" to the room, at most every 3 s while the box has text.
  function typed() {
    if (S.wsOpen && S.typingSender.shouldSend(Date.now(), $('input').value)) sendFrame({ typing: true });
  }

  function react(id, emoji) {
    if (!sendFrame(X.reactFrame(id, emoji))) toast('Not connected — try again in a moment.');
  }

  function recall(id) {
    closeMenus();
    if (!sendFrame(X.recallFrame(id))) toast('Not connected — try again in a moment.');
  }

  // rerender replaces a message's <li> after its state changed.
  function rerender(id) {
    var old = S.byId.get(id), m = S.msgs.get(id);
    if (!old || !m) return;
    var li = renderMessage(m);
    old.replaceWith(li);
    S.byId.set(id, li);
    if (S.toolsFor === id) attachTools(li);
    relayout();
  }

  // The actions bar (reactions, recall): one element, moved to the message
  // under the pointer (or long-pressed on a touch screen). Recall is offered
  // only while the message is young enough, and goes away when it is not.
  var toolsEl = null, toolsTimer = 0;
  function attachTools(li) {
    clearTimeout(toolsTimer);
    var id = Number(li.dataset.id);
    var m = S.msgs.get(id), x = S.xs.get(id);
    if (!m || !x || x.recalled) { detachTools(); return; }
    if (!toolsEl) {
      toolsEl = el('div', 'tools');
      toolsEl.setAttribute('role', 'toolbar');
      toolsEl.setAttribute('aria-label', 'Message actions');
    }
    toolsEl.textContent = '';
    X.EMOJI.forEach(function (e) {
      var b = el('button', 'react-btn', e);
      b.type = 'button';
      b.title = 'React with ' + e;
      b.addEventListener('click', function (ev) { ev.stopPropagation(); react(id, e); closeMenus(); });
      toolsEl.appendChild(b);
    });
    var left = X.recallLeft(m, S.me && S.me.uid, S.clock.now(), x);
    if (left > 0) {
      var r = el('button', 'recall-btn', 'Recall');
      r.type = 'button';
      r.title = 'Recall this message for everyone';
      r.addEventListener('click', function (ev) { ev.stopPropagation(); recall(id); });
      toolsEl.appendChild(r);
      toolsTimer = setTimeout(function () { r.remove(); }, left);
    }
    S.toolsFor = id;
    li.querySelector('.body').appendChild(toolsEl);
  }

  function detachTools() {
    clearTimeout(toolsTimer);
    S.toolsFor = 0;
    if (toolsEl) toolsEl.remove();
  }

  function closeMenus() {
    document.querySelectorAll('#list li.menu').forEach(function (li) { li.classList.remove('menu'); });
  }

  // ---------------------------------------------------------------- @mentions

  function updateMention() {
    var t = $('input');
    var q = t.selectionStart === t.selectionEnd ? X.mentionQuery(t.value, t.selectionStart) : null;
    var list = q ? X.mentionCandidates(S.members.list(), q.query, S.me && S.me.uid) : [];
    if (!list.length) { closeMention(); return; }
    var same = S.mention && S.mention.list.length === list.length && S.mention.list.every(function (m, i) { return m.uid === list[i].uid; });
    S.mention = { q: q, list: list, active: same ? S.mention.active : 0 };
    renderMention();
  }

  function renderMention() {
    var ul = $('mentions');
    ul.textContent = '';
    if (!S.mention) { ul.hidden = true; return; }
    S.mention.list.forEach(function (m, i) {
      var li = el('li', i === S.mention.active ? 'active' : '');
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', i === S.mention.active ? 'true' : 'false');
      li.dataset.uid = m.uid;
      li.appendChild(el('span', 'at', '@'));
      li.appendChild(el('span', 'nick', m.nickName));
      // mousedown, not click: the box keeps the focus and the caret
      li.addEventListener('mousedown', function (e) { e.preventDefault(); pickMention(i); });
      ul.appendChild(li);
    });
    ul.hidden = false;
    $('input').setAttribute('aria-expanded', 'true');
  }

  function closeMention() {
    S.mention = null;
    var ul = $('mentions');
    ul.hidden = true;
    ul.textContent = '';
    $('input').setAttribute('aria-expanded', 'false');
  }

  function pickMention(i) {
    if (!S.mention) return;
    var m = S.mention.list[i], t = $('input');
    var r = X.insertMention(t.value, S.mention.q, m.nickName);
    t.value = r.text;
    t.setSelectionRange(r.caret, r.caret);
    S.picked.push({ uid: m.uid, nickName: m.nickName });
    closeMention();
    autosize();
  }

  // mentionKey handles the keys of the open @ list; true when it used the key.
  function mentionKey(e) {
    if (!S.mention) return false;
    var n = S.mention.list.length;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      S.mention.active = (S.mention.active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
      renderMention();
    } else if ((e.key === 'Enter' && !e.shiftKey && !e.isComposing) || e.key === 'Tab') {
      pickMention(S.mention.active);
    } else if (e.key === 'Escape') {
      closeMention();
    } else {
      return false;
    }
    e.preventDefault();
    return true;
  }

  // ---------------------------------------------------------------- unread

  var roomsTimer = 0;
  function refreshRooms() {
    clearTimeout(roomsTimer);
    if (!S.session) return;
    roomsTimer = setTimeout(refreshRooms, 30000);
    if (document.hidden) return;
    api('GET', '/rooms').then(function (body) {
      S.unreadRooms.update(body);
      if (S.seenId && !document.hidden) S.unreadRooms.read(S.room, S.seenId);
      renderRoomsBadge();
      if ($('rooms').open) renderRoomsList();
    }).catch(function () { /* badges stay as they were */ });
  }

  function renderRoomsBadge() {
    var n = S.unreadRooms.total(S.room);
    var b = $('rooms-badge');
    b.textContent = X.badge(n);
    b.hidden = !n;
    $('room-btn').title = n ? 'Switch room — ' + n + ' unread elsewhere' : 'Switch room';
  }

  // markRead tells the server how far the user has seen this room (POST
  // /read, at most once a second) while the page is in view.
  var readTimer = 0;
  function markRead() {
    if (document.hidden || !S.session || !S.seenId) return;
    S.readMarker.note(S.seenId);
    S.unreadRooms.read(S.room, S.seenId);
    flushRead();
  }

  function flushRead() {
    clearTimeout(readTimer);
    var marker = S.readMarker, room = S.room;
    var id = marker.take(Date.now());
    if (id) {
      api('POST', '/read', { room: room, id: id }).catch(function () { marker.failed(id); });
    }
    var w = marker.wait(Date.now());
    if (w >= 0) readTimer = setTimeout(flushRead, w + 10);
  }

  // ---------------------------------------------------------------- messages

  function isChat(m) {
    return X.isMessage(m);
  }

  function isMine(m) {
    return m.type === 'user' || (m.type === undefined && !!S.me && m.uid === S.me.uid);
  }

  // addMessages merges messages by id into the list, in id order.
  function addMessages(msgs, how) {
    var list = $('list');
    var sc = $('scroller');
    var wasNear = nearBottom();
    var newMine = false, newTheirs = 0, added = false;
    for (var i = 0; i < msgs.length; i++) {
      var m = msgs[i];
      if (m && X.isEvent(m)) { noteSeen(m.id); continue; } // a page's event: counted in its target's state already
      if (!isChat(m)) continue;
      noteSeen(m.id);
      if (S.byId.has(m.id)) continue;
      S.msgs.set(m.id, m);
      S.xs.set(m.id, X.extrasOf(m, S.me && S.me.uid, how.horizon));
      if (!m.recalled) S.members.see(m.uid, m.nickName);
      var li = renderMessage(m);
      dropPlaceholder(m);
      // Find the place: usually the end (live) or the start (history).
      var next = null;
      if (S.lastId && m.id < S.lastId) {
        var ids = Array.from(S.byId.keys());
        var after = Infinity;
        for (var k = 0; k < ids.length; k++) if (ids[k] > m.id && ids[k] < after) after = ids[k];
        if (after !== Infinity) next = S.byId.get(after);
      }
      if (!next) { // before the pending placeholders, which always sit at the end
        next = list.querySelector('li.pending');
      }
      list.insertBefore(li, next);
      S.byId.set(m.id, li);
      if (m.id > S.lastId) S.lastId = m.id;
      if (!S.oldestId || m.id < S.oldestId) S.oldestId = m.id;
      added = true;
      if (how.live) {
        if (m.type === 'user') newMine = true; else newTheirs++;
      }
    }
    markRead();
    if (!added) return;
    if (how.live && wasNear) trimOldest();
    relayout();
    if (how.history) return; // the caller places the view
    if (newTheirs && document.hidden) {
      S.hiddenUnread = (S.hiddenUnread || 0) + newTheirs;
      setTitle();
    }
    if (newMine || wasNear) {
      scrollToBottom();
    } else if (newTheirs) {
      setUnread(S.unread + newTheirs);
    }
    if (S.noMore) renderOlder();
    void sc;
  }

  // trimOldest keeps a tab open for days as light as a fresh one: beyond
  // maxShown messages the oldest go, with what came before them (notices);
  // scrolling up pages them back from /history.
  function trimOldest() {
    var extra = S.byId.size - maxShown;
    if (extra <= 0) return;
    var ids = Array.from(S.byId.keys()).sort(function (a, b) { return a - b; });
    for (var i = 0; i < extra; i++) {
      var li = S.byId.get(ids[i]);
      if (li) li.remove();
      S.byId.delete(ids[i]);
      S.msgs.delete(ids[i]);
      S.xs.delete(ids[i]);
    }
    S.oldestId = ids[extra];
    S.noMore = false;
    var list = $('list'), first = S.byId.get(S.oldestId);
    while (list.firstElementChild && list.firstElementChild !== first) list.firstElementChild.remove();
    renderOlder();
  }

  // dropPlaceholder removes the pending bubble of our own message m: the one
  // with its cid, or (for a replay after a dropped connection, which carries no
  // cid) a failed one with the same content.
  function dropPlaceholder(m) {
    var p = null;
    if (m.cid && S.pending.has(m.cid)) {
      p = S.pending.get(m.cid);
      S.pending.delete(m.cid);
    } else if (m.type === 'user') {
      S.pending.forEach(function (li, cid) {
        var f = li._frame;
        if (p || !f || !li.classList.contains('failed')) return;
        if ((m.text && f.text && f.content.trim() === String(m.content).trim()) || (m.gallery && f.gallery && f.url === m.url)) {
          p = li;
          S.pending.delete(cid);
        }
      });
    }
    if (p) p.remove();
  }

  function renderMessage(m) {
    var mine = isMine(m);
    var x = S.xs.get(m.id) || X.extrasOf(m);
    var li = el('li', 'msg ' + (mine ? 'mine' : 'theirs'));
    li.dataset.id = String(m.id);
    li.dataset.uid = String(m.uid || '');
    li.dataset.time = String(m.time || 0);
    if (x.recalled) {
      li.classList.add('recalled');
      li.appendChild(el('span', 'recall-note', X.recallLabel(m.nickName, mine)));
      return li;
    }
    var meUid = S.me && S.me.uid;
    if (X.mentionsMe(m, meUid)) li.classList.add('mentioned');
    if (!mine) {
      var av = el('img', 'avatar');
      av.alt = '';
      av.width = av.height = 32;
      av.loading = 'lazy';
      setAvatar(av, m.avatarUrl);
      li.appendChild(av);
    }
    var body = el('div', 'body');
    if (!mine) body.appendChild(el('div', 'name', String(m.nickName || 'Someone')));
    var bubble = el('div', 'bubble');
    if (m.gallery) {
      bubble.classList.add('image');
      var src = safeURL(m.url);
      if (src) bubble.appendChild(thumbnail(src));
      else bubble.appendChild(el('span', 'muted', '[image]'));
    } else {
      var t = el('div', 'text');
      fillText(t, m.content, m.mentions);
      bubble.appendChild(t);
    }
    var meta = el('time', 'meta', m.time ? timeFmt.format(new Date(m.time)) : '');
    if (m.time) {
      meta.dateTime = new Date(m.time).toISOString();
      meta.title = fullFmt.format(new Date(m.time));
    }
    bubble.appendChild(meta);
    body.appendChild(bubble);
    var chips = X.chips(x);
    if (chips.length) {
      var row = el('div', 'reactions');
      chips.forEach(function (c) {
        var b = el('button', c.mine ? 'chip mine' : 'chip');
        b.type = 'button';
        b.dataset.emoji = c.emoji;
        b.setAttribute('aria-pressed', c.mine ? 'true' : 'false');
        b.title = c.mine ? 'You reacted with ' + c.emoji + ' — click to take it back' : 'React with ' + c.emoji;
        b.appendChild(el('span', 'e', c.emoji));
        b.appendChild(el('span', 'n', String(c.count)));
        b.addEventListener('click', function () { react(m.id, c.emoji); });
        row.appendChild(b);
      });
      body.appendChild(row);
    }
    li.appendChild(body);
    return li;
  }

  // fillText puts a message's text into t: mentions highlighted (the user's
  // own more so), links as safe anchors, everything else as text.
  function fillText(t, content, mentions) {
    var meUid = S.me && S.me.uid;
    var nameOf = function (uid) { return uid === meUid && S.me ? S.me.nickName : S.members.name(uid); };
    X.mentionSpans(content, mentions, nameOf, meUid).forEach(function (s) {
      if (s.uid) t.appendChild(el('span', s.me ? 'mention me' : 'mention', s.text));
      else appendLinkified(t, s.text);
    });
  }

  function thumbnail(src) {
    var a = el('a', 'thumb');
    a.href = src;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    var img = el('img');
    img.alt = 'Image';
    img.referrerPolicy = 'no-referrer';
    img.decoding = 'async';
    img.src = src;
    img.addEventListener('load', function () {
      if (S.stick) scrollToBottom();
    });
    img.addEventListener('error', function () {
      a.classList.add('broken');
      a.textContent = 'Image not available';
    });
    a.appendChild(img);
    a.addEventListener('click', function (e) {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return; // let the browser open a tab
      e.preventDefault();
      openViewer(src);
    });
    return a;
  }

  // relayout recomputes day separators and sender groups over the whole list.
  // Lists hold a few hundred items, so a full pass is cheap and always right.
  function relayout() {
    var list = $('list');
    var prev = null, prevDay = '';
    var node = list.firstElementChild;
    while (node) {
      var next = node.nextElementSibling;
      if (node.classList.contains('day')) {
        node.remove(); // re-made below where needed
      } else {
        var t = Number(node.dataset.time) || 0;
        var key = t ? dayKey(t) : prevDay;
        if (t && key !== prevDay) {
          var sep = el('li', 'day');
          sep.appendChild(el('span', null, dayLabel(t)));
          list.insertBefore(sep, node);
          prevDay = key;
          prev = endGroup(prev);
        }
      }
      if (node.classList.contains('msg') && !node.classList.contains('pending') && !node.classList.contains('recalled')) {
        var cont = prev && prev.dataset.uid === node.dataset.uid && t - (Number(prev.dataset.time) || 0) < GROUP_MS;
        node.classList.toggle('cont', !!cont);
        if (prev) prev.classList.toggle('more', !!cont);
        prev = node;
      } else if (!node.classList.contains('day')) {
        prev = endGroup(prev); // notices and pending messages break groups
      }
      node = next;
    }
    endGroup(prev);
  }

  function endGroup(last) {
    if (last) last.classList.remove('more');
    return null;
  }

  // Pending own messages sit at the end until the server echoes their cid.
  function nextCid() { S.cidSeq++; return 'c' + Date.now().toString(36) + '-' + S.cidSeq; }

  function addPending(li) {
    li.classList.add('pending');
    $('list').appendChild(li);
    scrollToBottom();
  }

  function markFailed(li, why) {
    if (!li || li.classList.contains('failed')) return;
    li.classList.add('failed');
    var n = li.querySelector('.status');
    if (n) n.textContent = why;
  }

  function failPending(why) {
    S.pending.forEach(function (li) {
      if (!li.classList.contains('uploading')) markFailed(li, why);
    });
  }

  function pendingBubble(cid, fill) {
    var li = el('li', 'msg mine');
    li.dataset.cid = cid;
    var body = el('div', 'body');
    var bubble = el('div', 'bubble');
    fill(bubble);
    body.appendChild(bubble);
    var status = el('div', 'status', '');
    body.appendChild(status);
    li.appendChild(body);
    li.addEventListener('click', function (e) {
      if (!li.classList.contains('failed') || !li._retry || e.target.closest('a')) return;
      li.classList.remove('failed');
      status.textContent = '';
      li._retry();
    });
    return li;
  }

  function sendFrame(obj) {
    if (!S.ws || !S.wsOpen || S.ws.readyState !== 1) return false;
    S.ws.send(JSON.stringify(obj));
    return true;
  }

  function sendText() {
    var input = $('input');
    var text = input.value.replace(/\s+$/, '');
    if (!text.trim()) return;
    if (!S.wsOpen) { toast('Not connected yet — your message is still in the box.'); return; }
    var cid = nextCid();
    var mentions = X.mentionsIn(text, S.picked);
    var li = pendingBubble(cid, function (b) {
      var t = el('div', 'text');
      fillText(t, text, mentions);
      b.appendChild(t);
    });
    var frame = { text: true, content: text, cid: cid };
    if (mentions.length) frame.mentions = mentions;
    S.picked = [];
    closeMention();
    li._frame = frame;
    li._retry = function () {
      if (!sendFrame(frame)) markFailed(li, 'Not sent: offline. Tap to retry.');
    };
    S.pending.set(cid, li);
    addPending(li);
    if (!sendFrame(frame)) markFailed(li, 'Not sent: offline. Tap to retry.');
    input.value = '';
    autosize();
  }

  // ---------------------------------------------------------------- uploads

  var IMAGE_TYPES = /^image\/(png|jpeg|gif|webp)$/;

  // upload posts a file to /upload with progress; resolves with the answer.
  function upload(file, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open('POST', '/upload');
      var h = authHeaders({});
      Object.keys(h).forEach(function (k) { xhr.setRequestHeader(k, h[k]); });
      xhr.responseType = 'json';
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
      };
      xhr.onload = function () {
        var j = xhr.response;
        if (xhr.status === 200 && j && j.url) { resolve(j); return; }
        if (xhr.status === 401) { signOut('Your session has expired. Please sign in again.'); reject(new Error('session expired')); return; }
        var why = (j && j.message) || ('HTTP ' + xhr.status);
        if (xhr.status === 413) why = 'the image is too large';
        if (xhr.status === 415) why = 'only JPEG, PNG, GIF and WebP images can be sent';
        reject(new Error(why));
      };
      xhr.onerror = function () { reject(new Error('the upload failed — check your connection')); };
      var fd = new FormData();
      fd.append('file', file, file.name || 'image');
      xhr.send(fd);
    });
  }

  function sendImages(files) {
    var list = Array.prototype.filter.call(files || [], function (f) { return f && IMAGE_TYPES.test(f.type); });
    if (!list.length) {
      if (files && files.length) toast('Only JPEG, PNG, GIF and WebP images can be sent.');
      return;
    }
    list.forEach(sendImage);
  }

  function sendImage(file) {
    var cid = nextCid();
    var preview = URL.createObjectURL(file);
    var bar = el('div', 'progress');
    var fillBar = el('div');
    bar.appendChild(fillBar);
    var li = pendingBubble(cid, function (b) {
      b.classList.add('image');
      var wrap = el('div', 'thumb');
      var img = el('img');
      img.alt = '';
      img.src = preview;
      img.addEventListener('load', function () { if (S.stick) scrollToBottom(); });
      wrap.appendChild(img);
      b.appendChild(wrap);
      b.appendChild(bar);
    });
    li.classList.add('uploading');
    var status = li.querySelector('.status');
    status.textContent = 'Uploading…';
    S.pending.set(cid, li);
    addPending(li);
    var attempt = function () {
      li.classList.add('uploading');
      bar.hidden = false;
      fillBar.style.width = '0%';
      status.textContent = 'Uploading…';
      upload(file, function (p) {
        fillBar.style.width = Math.round(p * 100) + '%';
      }).then(function (ans) {
        fillBar.style.width = '100%';
        li.classList.remove('uploading');
        bar.hidden = true;
        status.textContent = '';
        var frame = { gallery: true, url: ans.url, cid: cid };
        li._frame = frame;
        li._retry = function () {
          if (!sendFrame(frame)) markFailed(li, 'Not sent: offline. Tap to retry.');
        };
        if (!sendFrame(frame)) markFailed(li, 'Not sent: offline. Tap to retry.');
      }, function (err) {
        li.classList.remove('uploading');
        bar.hidden = true;
        li._retry = attempt;
        markFailed(li, 'Upload failed: ' + err.message + '. Tap to retry.');
      });
    };
    attempt();
  }

  // ---------------------------------------------------------------- scrolling

  function nearBottom() {
    var sc = $('scroller');
    return sc.scrollHeight - sc.scrollTop - sc.clientHeight < NEAR_BOTTOM;
  }
  function scrollToBottom() {
    var sc = $('scroller');
    sc.scrollTop = sc.scrollHeight;
    S.stick = true;
    setUnread(0);
  }
  function setUnread(n) {
    S.unread = n;
    $('new-count').textContent = String(n);
    $('new-hint').hidden = n === 0;
    $('new-hint').lastChild.textContent = n === 1 ? ' new message' : ' new messages';
  }

  function onScroll() {
    S.stick = nearBottom();
    if (S.stick && S.unread) setUnread(0);
    maybeLoadOlder();
  }

  // ---------------------------------------------------------------- presence

  function presenceNotice(f) {
    if (!S.me || f.uid === S.me.uid || (f.event !== 'join' && f.event !== 'leave')) return;
    var list = $('list');
    // A quick leave-and-join (a reconnect) is not news: drop the leave notice.
    if (f.event === 'join') {
      var last = list.lastElementChild;
      if (last && last.classList.contains('notice') && last.dataset.uid === f.uid && last.dataset.event === 'leave' &&
        Date.now() - Number(last.dataset.at) < 30000) {
        last.remove();
        relayout();
        return;
      }
    }
    var wasNear = nearBottom();
    var li = el('li', 'notice');
    li.dataset.uid = String(f.uid || '');
    li.dataset.event = f.event;
    li.dataset.at = String(Date.now());
    li.dataset.time = li.dataset.at;
    li.appendChild(el('span', null, String(f.nickName || 'Someone') + (f.event === 'join' ? ' joined' : ' left')));
    list.insertBefore(li, list.querySelector('li.pending'));
    relayout();
    if (wasNear) scrollToBottom();
  }

  // ---------------------------------------------------------------- dialogs

  function closeDialogs() {
    ['rooms', 'profile'].forEach(function (id) { var d = $(id); if (d.open) d.close(); });
    closeViewer();
  }

  function openRooms() {
    renderRoomsList();
    refreshRooms();
    $('rooms-name').value = '';
    $('rooms').showModal();
    $('rooms-name').focus();
  }

  // renderRoomsList: the rooms visited here, then the others the server
  // knows the user in, each with its unread count.
  function renderRoomsList() {
    var ul = $('rooms-list');
    ul.textContent = '';
    var names = recentRooms();
    S.unreadRooms.rooms().forEach(function (r) { if (names.indexOf(r) < 0) names.push(r); });
    names.forEach(function (r) {
      var li = el('li');
      var b = el('button', r === S.room ? 'room-item current' : 'room-item');
      b.type = 'button';
      b.dataset.room = r;
      b.appendChild(el('span', 'room-name', '#' + r));
      var n = r === S.room ? 0 : S.unreadRooms.count(r);
      var at = r === S.room ? 0 : S.unreadRooms.mentions(r);
      if (n) {
        var badge = el('span', 'badge', X.badge(n));
        badge.title = n + ' unread' + (at ? ', ' + at + ' mentioning you' : '');
        b.appendChild(badge);
      }
      if (at) {
        var mark = el('span', 'badge at', '@');
        mark.title = at === 1 ? 'You were mentioned' : 'You were mentioned ' + at + ' times';
        b.appendChild(mark);
      }
      b.addEventListener('click', function () { $('rooms').close(); goRoom(r); });
      li.appendChild(b);
      ul.appendChild(li);
    });
  }

  function goRoom(r) {
    if (!ROOM_RE.test(r)) { toast('Room names use letters, digits, _ and - (up to 64).'); return; }
    if (r === S.room) return;
    location.hash = '#/room/' + r;
  }

  var profileAvatar = null; // uploaded but not yet saved
  function openProfile() {
    if (!S.me) return;
    profileAvatar = null;
    $('profile-name').value = S.me.nickName || '';
    setAvatar($('profile-avatar'), S.me.avatarUrl);
    $('profile-error').hidden = true;
    $('profile-progress').hidden = true;
    $('profile-save').disabled = false;
    $('profile').showModal();
  }

  function profileError(msg) {
    var e = $('profile-error');
    e.textContent = msg;
    e.hidden = false;
  }

  function saveProfile() {
    var name = $('profile-name').value.trim();
    if (!name) { profileError('Please enter a nickname.'); return; }
    var body = { nickName: name };
    if (profileAvatar) body.avatarUrl = profileAvatar;
    $('profile-save').disabled = true;
    api('POST', '/profile', body).then(function (me) {
      S.me = me;
      renderMe();
      $('profile').close();
      toast('Profile saved. New messages show it.');
    }, function (err) {
      $('profile-save').disabled = false;
      profileError(err.message);
    });
  }

  function pickAvatar(file) {
    if (!file) return;
    if (!IMAGE_TYPES.test(file.type)) { profileError('Choose a JPEG, PNG, GIF or WebP image.'); return; }
    var prog = $('profile-progress');
    prog.hidden = false;
    prog.firstChild.style.width = '0%';
    $('profile-save').disabled = true;
    $('profile-error').hidden = true;
    upload(file, function (p) { prog.firstChild.style.width = Math.round(p * 100) + '%'; }).then(function (ans) {
      profileAvatar = ans.url;
      setAvatar($('profile-avatar'), ans.url);
      prog.hidden = true;
      $('profile-save').disabled = false;
    }, function (err) {
      prog.hidden = true;
      $('profile-save').disabled = false;
      profileError('Upload failed: ' + err.message);
    });
  }

  function openViewer(src) {
    $('viewer-img').src = src;
    $('viewer-open').href = src;
    $('viewer').hidden = false;
  }
  function closeViewer() {
    $('viewer').hidden = true;
    $('viewer-img').removeAttribute('src');
  }

  // ---------------------------------------------------------------- composer

  function autosize() {
    var t = $('input');
    t.style.height = 'auto';
    t.style.height = Math.min(t.scrollHeight, 140) + 'px';
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    $('signin-form').addEventListener('submit', function (e) {
      e.preventDefault();
      var n = $('signin-name').value.trim();
      if (n) signIn(n);
    });

    $('composer').addEventListener('submit', function (e) { e.preventDefault(); sendText(); $('input').focus(); });
    $('input').addEventListener('keydown', function (e) {
      if (mentionKey(e)) return;
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        sendText();
      }
    });
    $('input').addEventListener('input', function () { autosize(); typed(); updateMention(); });
    $('input').addEventListener('click', updateMention);
    $('input').addEventListener('blur', function () { setTimeout(closeMention, 150); });

    // The actions bar follows the pointer over the messages; on a touch
    // screen a long press opens it (and a tap elsewhere closes it).
    var lastPointer = 'mouse';
    $('list').addEventListener('pointerdown', function (e) { lastPointer = e.pointerType; }, { passive: true });
    $('list').addEventListener('mouseover', function (e) {
      var li = e.target.closest && e.target.closest('#list li.msg[data-id]');
      if (li && Number(li.dataset.id) !== S.toolsFor) attachTools(li);
    });
    $('list').addEventListener('contextmenu', function (e) {
      var li = e.target.closest && e.target.closest('#list li.msg[data-id]');
      if (!li || lastPointer !== 'touch' || li.classList.contains('recalled')) return;
      e.preventDefault();
      closeMenus();
      attachTools(li);
      li.classList.add('menu');
    });
    document.addEventListener('pointerdown', function (e) {
      if (!e.target.closest || !e.target.closest('#list li.menu')) closeMenus();
    }, { passive: true });
    $('input').addEventListener('paste', function (e) {
      var files = e.clipboardData && e.clipboardData.files;
      if (files && files.length) {
        e.preventDefault();
        sendImages(files);
      }
    });
    $('file').addEventListener('change', function () {
      sendImages(this.files);
      this.value = '';
    });

    // Drag and drop anywhere on the chat.
    var app = $('app'), depth = 0;
    var hasFiles = function (e) { return e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types || [], 'Files') >= 0; };
    app.addEventListener('dragenter', function (e) { if (!hasFiles(e)) return; depth++; $('drop').hidden = false; });
    app.addEventListener('dragleave', function () { if (--depth <= 0) { depth = 0; $('drop').hidden = true; } });
    app.addEventListener('dragover', function (e) { if (hasFiles(e)) e.preventDefault(); });
    app.addEventListener('drop', function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      $('drop').hidden = true;
      sendImages(e.dataTransfer.files);
    });

    $('scroller').addEventListener('scroll', onScroll, { passive: true });
    $('new-hint').addEventListener('click', scrollToBottom);
    $('retry').addEventListener('click', function () { S.hold = false; reconnectNow(); });

    $('room-btn').addEventListener('click', openRooms);
    $('rooms-form').addEventListener('submit', function (e) {
      var r = $('rooms-name').value.trim().replace(/^#/, '');
      if (!r) return; // nothing typed: just close
      if (!ROOM_RE.test(r)) { e.preventDefault(); $('rooms-name').reportValidity(); return; }
      goRoom(r);
    });

    $('me-btn').addEventListener('click', openProfile);
    $('profile-form').addEventListener('submit', function (e) {
      e.preventDefault();
      saveProfile();
    });
    $('profile-file').addEventListener('change', function () { pickAvatar(this.files[0]); this.value = ''; });
    $('signout').addEventListener('click', function () {
      if (S.session) { // end the session on the server too: its sockets close, its skey stops working
        fetch('/logout', { method: 'POST', headers: authHeaders(), cache: 'no-store', keepalive: true }).catch(function () {});
      }
      signOut('');
    });
    document.querySelectorAll('[data-close]').forEach(function (b) {
      b.addEventListener('click', function () { b.closest('dialog').close(); });
    });

    $('viewer').addEventListener('click', function (e) { if (e.target.id !== 'viewer-open') closeViewer(); });
    document.addEventListener('keydown', function (e) { if (e.key === 'Escape' && !$('viewer').hidden) closeViewer(); });

    window.addEventListener('hashchange', function () {
      if (!S.session || !S.me) return;
      var r = roomFromHash();
      if (r !== S.room) enterRoom(r);
    });
    window.addEventListener('online', reconnectNow);
    document.addEventListener('visibilitychange', function () {
      if (document.hidden) return;
      S.hiddenUnread = 0;
      setTitle();
      reconnectNow();
      markRead();
      refreshRooms();
    });
  }

  // Hooks for the end-to-end tests (and curious people in the console).
  window.__panda = {
    // dropSocket closes the connection as a network failure would; with
    // hold, the client stays offline until resume().
    dropSocket: function (hold) {
      S.hold = !!hold;
      if (S.ws) S.ws.close(4000, 'dropped');
    },
    resume: function () { S.hold = false; S.attempt = 0; reconnectNow(); },
    setMaxShown: function (n) { maxShown = n; },
    state: function () {
      return { room: S.room, connected: S.wsOpen, online: S.online, lastId: S.lastId, seenId: S.seenId, oldestId: S.oldestId, count: S.byId.size, noMore: S.noMore, me: S.me, read: S.readMarker.posted };
    }
  };

  wire();
  S.session = loadSession();
  if (S.session) start(); else showSignin('');
})();
