'use strict';
// The chat connection: a small state machine around wx.connectSocket.
//
//   idle ─start→ connecting ─onOpen→ open ─close/error→ reconnecting ─timer→ connecting …
//   any ─stop→ closed            (ERR_BAD_ROOM also ends in closed: retrying cannot help)
//
// Reconnects wait with exponential backoff and jitter and ask for
// since=<last message id seen>, so the server replays what was missed.
// An ERR_INVALID_SESSION frame clears the session; the next connect logs in
// again at once, but only once in a row: if the fresh session is refused too,
// the following attempts go through the backoff (no tight loop).
// A send that fails (SocketTask.send's fail) counts as the connection going
// down: the socket reconnects, and whoever sent re-sends what has no echo.
// The backoff starts over only after a connection stayed in the room for
// GOOD_FOR ms: a server that admits and then closes at once (a crashing room,
// a node cut off from its cluster) is not hammered every half second.

const http = require('./http');
const urls = require('./url');

const STATES = Object.freeze({
  IDLE: 'idle',
  CONNECTING: 'connecting',
  OPEN: 'open',
  RECONNECTING: 'reconnecting',
  CLOSED: 'closed'
});

const DEFAULT_BACKOFF = Object.freeze({ base: 500, factor: 2, max: 30000, jitter: 0.5 });
const GOOD_FOR = 10000;

// backoffDelay(attempt) = min(max, base·factor^attempt) scaled into
// [1-jitter, 1] of itself by random() ∈ [0, 1).
function backoffDelay(attempt, options, random) {
  const o = Object.assign({}, DEFAULT_BACKOFF, options || {});
  const rnd = random || Math.random;
  const raw = Math.min(o.max, o.base * Math.pow(o.factor, Math.max(0, attempt)));
  const scaled = raw * (1 - o.jitter + o.jitter * rnd());
  return Math.max(0, Math.round(scaled));
}

function createChatSocket(opts) {
  const wx = opts.wx;
  const config = opts.config;
  const auth = opts.auth;
  const room = opts.room || config.room || 'lobby';
  const presence = !!opts.presence;
  const onFrame = opts.onFrame || function () {};
  const onState = opts.onState || function () {};
  const timers = opts.timers || {
    setTimeout: function (fn, ms) { return setTimeout(fn, ms); },
    clearTimeout: function (id) { clearTimeout(id); }
  };
  const random = opts.random || Math.random;
  const now = opts.now || Date.now;
  const backoff = Object.assign({}, DEFAULT_BACKOFF, opts.backoff || {});

  let state = STATES.IDLE;
  let lastId = typeof opts.since === 'number' ? opts.since : undefined;
  let conn = null; // {gen, task, down, invalid, fatal}
  let gen = 0;
  let attempt = 0;
  let invalidStreak = 0;
  let timer = null;
  let stopped = false;
  let lastUrl = '';

  function setState(next, info) {
    state = next;
    try {
      onState(next, info || {});
    } catch (e) {
      // a listener's error must not break the connection logic
    }
  }

  function clearTimer() {
    if (timer !== null) {
      timers.clearTimeout(timer);
      timer = null;
    }
  }

  function buildUrl(s) {
    const params = { room: room };
    if (typeof lastId === 'number') params.since = lastId;
    if (presence) params.presence = 1;
    params.v = 2; // recall, reactions, typing and mentions (protocol.md §8)
    // The session goes in the connectSocket header only: a URL ends up in
    // proxy and server access logs, and the skey must not.
    return urls.wsBase(config) + '/ws?' + urls.query(params);
  }

  function connect() {
    clearTimer();
    const myGen = ++gen;
    setState(STATES.CONNECTING, { attempt: attempt });
    auth.ensure().then(function (s) {
      if (myGen !== gen || stopped) return;
      open(myGen, s);
    }, function (err) {
      if (myGen !== gen || stopped) return;
      scheduleReconnect({ error: err });
    });
  }

  function open(myGen, s) {
    const c = { gen: myGen, task: null, down: false, invalid: false, fatal: null, joined: false };
    conn = c;
    lastUrl = buildUrl(s);
    let task;
    try {
      task = wx.connectSocket({
        url: lastUrl,
        header: { 'X-WX-Id': s.id, 'X-WX-Skey': s.skey },
        fail: function (err) {
          down(c, { error: new http.PandaError('ERR_NETWORK', (err && err.errMsg) || 'connectSocket failed') });
        }
      });
    } catch (e) {
      down(c, { error: e });
      return;
    }
    if (c.down || !task) {
      if (!c.down) down(c, { error: new http.PandaError('ERR_NETWORK', 'connectSocket gave no task') });
      return;
    }
    c.task = task;
    task.onOpen(function () {
      if (c.gen !== gen || c.down) return;
      setState(STATES.OPEN, {});
    });
    task.onMessage(function (msg) {
      if (c.gen !== gen || c.down) return;
      handleMessage(c, msg && msg.data);
    });
    task.onClose(function (res) {
      down(c, { code: res && res.code, reason: res && res.reason });
    });
    task.onError(function (err) {
      down(c, { error: new http.PandaError('ERR_NETWORK', (err && err.errMsg) || 'socket error') });
    });
  }

  function closeTask(c, code, reason) {
    if (!c || !c.task) return;
    try {
      c.task.close({ code: code || 1000, reason: reason || '' });
    } catch (e) {
      // already closed
    }
  }

  function handleMessage(c, data) {
    if (typeof data !== 'string') return; // the server sends text frames only
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (!frame || typeof frame !== 'object' || Array.isArray(frame)) return;
    if (frame.error === http.ERR_INVALID_SESSION) {
      // The server closes with 1008 right after; closing from here too keeps
      // the outcome the same if its close frame never arrives.
      c.invalid = true;
      auth.session.clear();
      closeTask(c, 1000, 'relogin');
      return;
    }
    if (frame.error === 'ERR_BAD_ROOM') c.fatal = frame.error;
    if (frame.type === 'system') {
      // authenticated and in the room: the session is good; the connection
      // is once it lasts (down)
      invalidStreak = 0;
      c.joined = true;
      c.joinedAt = now();
    }
    // events (recall, reaction) take ids of the same sequence: since counts them
    if ((frame.type === 'user' || frame.type === 'remote' || frame.type === 'recall' || frame.type === 'reaction') && typeof frame.id === 'number') {
      if (typeof lastId !== 'number' || frame.id > lastId) lastId = frame.id;
    }
    try {
      onFrame(frame);
    } catch (e) {
      // a listener's error must not break the connection logic
    }
  }

  // One connection went down (close, error or connect failure): handled once.
  function down(c, info) {
    if (c.down) return;
    c.down = true;
    if (c.gen !== gen) return; // stopped or replaced meanwhile
    closeTask(c, 1000, '');
    conn = null;
    if (c.joined && now() - c.joinedAt >= GOOD_FOR) attempt = 0;
    if (stopped) {
      setState(STATES.CLOSED, info);
      return;
    }
    if (c.fatal) {
      stopped = true;
      setState(STATES.CLOSED, Object.assign({}, info, { error: new http.PandaError(c.fatal, c.fatal) }));
      return;
    }
    if (c.invalid && invalidStreak === 0) {
      invalidStreak = 1;
      setState(STATES.RECONNECTING, Object.assign({}, info, { relogin: true, delay: 0 }));
      connect(); // the session is cleared: ensure() logs in again
      return;
    }
    if (c.invalid) invalidStreak++;
    scheduleReconnect(info);
  }

  function scheduleReconnect(info) {
    const delay = backoffDelay(attempt, backoff, random);
    attempt++;
    setState(STATES.RECONNECTING, Object.assign({}, info, { delay: delay, attempt: attempt }));
    timer = timers.setTimeout(function () {
      timer = null;
      if (!stopped) connect();
    }, delay);
  }

  function start() {
    if (state === STATES.OPEN || state === STATES.CONNECTING) return;
    stopped = false;
    attempt = 0;
    invalidStreak = 0;
    connect();
  }

  // stop(): close for good (page unload); start() may be called again later.
  function stop() {
    stopped = true;
    clearTimer();
    const c = conn;
    conn = null;
    gen++;
    if (c) {
      c.down = true;
      closeTask(c, 1000, 'bye');
    }
    if (state !== STATES.CLOSED) setState(STATES.CLOSED, { code: 1000 });
  }

  // reconnectNow(): skip the remaining backoff wait (e.g. when the app comes
  // back to the foreground).
  function reconnectNow() {
    if (state !== STATES.RECONNECTING || stopped) return false;
    connect();
    return true;
  }

  // send(object) → true when handed to the socket, false when not open. A
  // send that fails later takes the connection down (reconnect with backoff).
  function send(obj) {
    if (state !== STATES.OPEN || !conn || !conn.task) return false;
    const c = conn;
    const fail = function (err) {
      down(c, { error: new http.PandaError('ERR_NETWORK', (err && err.errMsg) || 'send failed') });
    };
    try {
      c.task.send({ data: JSON.stringify(obj), fail: fail });
    } catch (e) {
      fail({ errMsg: e && e.message });
      return false;
    }
    return true;
  }

  return {
    start: start,
    stop: stop,
    send: send,
    reconnectNow: reconnectNow,
    get state() { return state; },
    // joined: open and in the room (its system frame came)
    get joined() { return state === STATES.OPEN && !!conn && conn.joined; },
    get lastId() { return lastId; },
    set lastId(v) { if (typeof v === 'number' && (typeof lastId !== 'number' || v > lastId)) lastId = v; },
    get url() { return lastUrl; },
    get attempt() { return attempt; }
  };
}

module.exports = { createChatSocket, backoffDelay, STATES, DEFAULT_BACKOFF };
