'use strict';
// One chat room: the message list (messages.js), the socket (socket.js) and
// the /history calls, wired together. The chat page renders it; the tests run
// it against the real server.
//
// - start(): the newest history page, then the socket with since=<its last id>,
//   so nothing between the two is lost and nothing is shown twice.
// - Sending: a message is queued; it goes out once the socket is in the room
//   (its system frame came). Every message without an echo is sent again after
//   a reconnect, with the same cid: the server stores a cid once and answers a
//   repeat with the original echo. A message handed to the socket maxAttempts
//   times without an echo is marked failed; the user sends it again (the
//   count starts over) or deletes it. One first sent longer ago than the
//   server keeps cids (2 minutes) waits for the replay instead, which shows it
//   if it was stored: it is sent again only if the replay did not.
// - Replay holes: when more than the server's replay limit was missed, the
//   replay brings only the newest messages; the list sees the first one above
//   since+1 and the missing ids are paged from /history, newest first, up to
//   fillMax messages; a larger hole is cut off below (the window drops what is
//   older than it) and scrolling up pages the rest.
// - History: loadOlder() pages backwards from the oldest message held;
//   jumpToLatest() goes back to the live end after older pages pushed it out.
//   History calls run one at a time.
// - Recall, reactions, typing (protocol.md §8): react(), recall() and
//   typing() send their frames when the socket is in the room; the events
//   come back like messages and change the list. read() posts how far the
//   user has seen the room (POST /read), at most once a second.

const { STATES, backoffDelay } = require('./socket');
const extras = require('./extras');
const { SHADOW_TRUST } = require('./messages');

// After a rejoin, a message first sent longer ago than the server keeps its
// cid waits for the replay (which hides it if it was stored after all): until
// no frame has come for REPLAY_QUIET ms, REPLAY_MAX ms at most.
const REPLAY_QUIET = 300;
const REPLAY_MAX = 5000;

// A failed first history read is tried again after 1 s, 2 s, 4 s … 30 s.
const HISTORY_BACKOFF = Object.freeze({ base: 1000, factor: 2, max: 30000, jitter: 0 });

const DEFAULTS = Object.freeze({
  max: 500, // messages held
  pageSize: 20, // messages per older page
  historyPage: 100, // largest /history page (the server's --history-limit)
  fillMax: 300, // most messages paged into one replay hole
  maxAttempts: 3, // sends of one message without an echo before it is marked failed
  readEvery: 1000 // ms between two POST /read
});

function uploadCode(err) {
  if (err && (err.status === 413 || err.code === 'ERR_TOO_LARGE')) return 'ERR_TOO_LARGE';
  if (err && err.code === 'ERR_QUOTA') return 'ERR_QUOTA';
  return 'ERR_UPLOAD';
}

function createChatRoom(opts) {
  const client = opts.client;
  const o = Object.assign({}, DEFAULTS, opts);
  const room = opts.room || client.config.room || 'lobby';
  const onChange = opts.onChange || function () {};
  const list = client.messages({ me: opts.me, max: o.max, newCid: opts.newCid, now: opts.now });
  let socket = null;
  let stopped = false;
  let chain = Promise.resolve();
  let busy = 0;
  let filling = false;
  const clock = extras.createClock(opts.now);
  const typingSender = extras.createTypingSender();
  const marker = extras.createReadMarker(o.readEvery);
  const timers = opts.timers || {
    setTimeout: function (fn, ms) { return setTimeout(fn, ms); },
    clearTimeout: function (id) { clearTimeout(id); }
  };
  const nowFn = opts.now || Date.now;
  let readTimer = null;
  let replayTimer = null;
  let replaySince = 0;

  function changed(reason, info) {
    try {
      onChange(reason, info || {});
    } catch (e) {
      // a listener's error must not break the chat
    }
  }

  // serial(fn): history calls one at a time
  function serial(fn) {
    busy++;
    const p = chain.then(fn).then(function (v) {
      busy--;
      return v;
    }, function (e) {
      busy--;
      throw e;
    });
    chain = p.catch(function () {});
    return p;
  }

  function history(q) {
    return client.api.history(Object.assign({ room: room }, q));
  }

  // latest(attempt) → the newest page's last id, the socket's since. A failed
  // read is tried again with backoff: a socket without since would leave a
  // quiet room empty, with nothing to page older messages from.
  function latest(attempt) {
    return history({ limit: o.pageSize }).then(function (page) {
      list.addLatest(page, o.pageSize);
      return typeof list.topId === 'number' ? list.topId : 0;
    }, function (err) {
      changed('history-error', { error: err, attempt: attempt });
      return new Promise(function (resolve) {
        timers.setTimeout(resolve, backoffDelay(attempt, HISTORY_BACKOFF));
      }).then(function () {
        return stopped ? undefined : latest(attempt + 1);
      });
    });
  }

  function start() {
    stopped = false;
    return serial(function () {
      return latest(0);
    }).then(function (since) {
      if (stopped) return;
      changed('latest', {});
      socket = client.socket({
        room: room,
        since: since,
        timers: opts.timers,
        random: opts.random,
        now: opts.now,
        backoff: opts.backoff,
        presence: opts.presence,
        onFrame: onFrame,
        onState: onState
      });
      socket.start();
    });
  }

  // flush(rejoined): hand queued messages to the socket; after a (re)join
  // also the ones sent before without an echo, except those too old for the
  // server to know their cid: they go once the replay is in (flushOld).
  function flush(rejoined) {
    if (!socket || !socket.joined) return;
    const t = nowFn();
    list.unsent().forEach(function (u) {
      if (!rejoined && u.state !== 'queued') return;
      if (rejoined && forgotten(u, t)) {
        awaitReplay();
        return;
      }
      send1(u);
    });
  }

  // flushOld(): the old unconfirmed messages the replay did not hide.
  function flushOld() {
    replayTimer = null;
    if (!socket || !socket.joined) return;
    const t = nowFn();
    list.unsent().forEach(function (u) {
      if (u.state === 'sent' && forgotten(u, t)) send1(u);
    });
  }

  // forgotten(u, t): u was first sent so long ago that the server no longer knows its cid.
  function forgotten(u, t) {
    return !!u.firstSent && t - u.firstSent > SHADOW_TRUST;
  }

  // awaitReplay(): (re)arm flushOld while the replay is coming in.
  function awaitReplay() {
    if (replayTimer === null) replaySince = nowFn();
    else if (nowFn() - replaySince >= REPLAY_MAX) return;
    else timers.clearTimeout(replayTimer);
    replayTimer = timers.setTimeout(flushOld, REPLAY_QUIET);
  }

  // send1(u): one unsent message to the socket, or failed after maxAttempts.
  function send1(u) {
    if (u.attempts >= o.maxAttempts) {
      list.failPending(u.cid, 'ERR_NOT_SENT');
      changed('failed', { cid: u.cid });
      return;
    }
    if (socket.send(u.frame)) list.markSent(u.cid);
  }

  function onFrame(frame) {
    // the echo of a message just sent is surely live (a replayed one may be old)
    if (frame.type === 'user' && typeof frame.cid === 'string') clock.observe(frame.time);
    const r = list.applyFrame(frame);
    if (replayTimer !== null && frame.type !== 'system') awaitReplay(); // the replay goes on
    if (frame.type === 'system') {
      flush(true);
      if (list.gaps.length) fillGaps();
    }
    if (r.gap) fillGaps();
    changed('frame', Object.assign({ frame: frame }, r));
  }

  function onState(state, info) {
    if (state === STATES.CLOSED && info && info.error && info.error.code === 'ERR_BAD_ROOM') {
      list.unsent().forEach(function (u) { list.failPending(u.cid, 'ERR_NOT_CONNECTED'); });
    }
    changed('state', { state: state, info: info || {} });
  }

  // fillGaps(): page the replay holes from /history (see the top of the file).
  function fillGaps() {
    if (filling) return;
    filling = true;
    let current = null; // the gap being filled (its `from` stays put)
    let left = 0; // messages it may still take
    function step() {
      const gaps = list.gaps;
      if (stopped || !gaps.length) return null;
      const g = gaps[gaps.length - 1];
      if (current !== g.from) {
        current = g.from;
        left = o.fillMax;
      }
      if (left <= 0) {
        list.cutGap();
        changed('gap', { cut: true });
        return step();
      }
      const limit = Math.min(o.historyPage, left, g.to - g.from + 1);
      const before = g.to + 1;
      left -= limit;
      return history({ before: before, limit: limit }).then(function (page) {
        list.fillGap(page, limit, before);
        changed('gap', { before: before });
        return step();
      });
    }
    serial(step).then(function () {
      filling = false;
    }, function (err) {
      // the hole stays; the next join tries again
      filling = false;
      changed('gap-error', { error: err });
    });
  }

  // send(text, mentions) → cid; mentions: the uids the text mentions
  function send(text, mentions) {
    const p = list.addPending({ text: text, mentions: mentions });
    flush(false);
    changed('send', { cid: p.cid });
    return p.cid;
  }

  // direct(frame) → true when handed to a socket that is in the room
  function direct(frame) {
    return !!socket && socket.joined && socket.send(frame);
  }

  // react(id, emoji): toggle the user's reaction; the event comes back.
  function react(id, emoji) {
    return direct(extras.reactFrame(id, emoji));
  }

  // recall(id): take back an own message (the server says no after 2 minutes).
  function recall(id) {
    return direct(extras.recallFrame(id));
  }

  // recallLeft(id) → ms the user may still recall message id (on the room's clock)
  function recallLeft(id) {
    return list.recallLeft(id, clock.now());
  }

  // typing(text): the user typed; tells the room at most every 3 s.
  function typing(text) {
    if (!socket || !socket.joined) return false;
    if (!typingSender.shouldSend(nowFn(), text)) return false;
    return socket.send({ typing: true });
  }

  // read(): the user sees the room now: POST /read up to the newest id seen.
  function read() {
    const top = list.topId;
    if (typeof top !== 'number' || !list.atLatest) return;
    marker.note(top);
    client.unread.read(room, top);
    flushRead();
  }

  function flushRead() {
    if (readTimer !== null) {
      timers.clearTimeout(readTimer);
      readTimer = null;
    }
    if (stopped) return;
    const id = marker.take(nowFn());
    if (id) {
      client.api.read(room, id).catch(function () { marker.failed(id); });
    }
    const w = marker.wait(nowFn());
    if (w >= 0) readTimer = timers.setTimeout(function () { readTimer = null; flushRead(); }, w + 10);
  }

  function upload(cid, localPath) {
    client.api.upload(localPath, {
      onProgress: function (pct) {
        if (list.setProgress(cid, pct)) changed('progress', { cid: cid });
      }
    }).then(function (media) {
      if (!list.uploadDone(cid, media.url)) return; // deleted meanwhile
      flush(false);
      changed('uploaded', { cid: cid });
    }, function (err) {
      if (list.failPending(cid, uploadCode(err), err && err.message)) changed('upload-error', { cid: cid, error: err });
    });
  }

  // sendImage(localPath) → cid: shown at once from the local file with its
  // upload progress, sent as a gallery message once uploaded.
  function sendImage(localPath) {
    const cid = list.addUpload(localPath);
    changed('send', { cid: cid });
    upload(cid, localPath);
    return cid;
  }

  // retry(cid): a failed message goes again (a failed upload is uploaded again).
  function retry(cid) {
    const r = list.retryPending(cid);
    if (!r) return false;
    if (r.upload) upload(cid, r.upload);
    else flush(false);
    changed('retry', { cid: cid });
    return true;
  }

  function remove(cid) {
    const ok = list.removePending(cid);
    if (ok) changed('remove', { cid: cid });
    return ok;
  }

  // loadOlder() → Promise<{added, dropped, before} | null>; null: nothing to do now.
  function loadOlder() {
    if (busy || !list.hasOlder || typeof list.firstId !== 'number') return Promise.resolve(null);
    const before = list.firstId;
    return serial(function () {
      return history({ before: before, limit: o.pageSize }).then(function (page) {
        if (list.firstId !== before) return null; // the window moved meanwhile
        const r = list.addOlder(page, o.pageSize);
        r.before = before;
        changed('older', r);
        return r;
      });
    });
  }

  // jumpToLatest(): back to the live end (the newest page plus what came live meanwhile).
  function jumpToLatest() {
    if (list.atLatest) return Promise.resolve(false);
    return serial(function () {
      return history({ limit: o.pageSize }).then(function (page) {
        list.addLatest(page, o.pageSize);
        changed('latest', {});
        if (list.gaps.length) fillGaps();
        return true;
      });
    });
  }

  function reconnectNow() {
    return !!socket && socket.reconnectNow();
  }

  function stop() {
    stopped = true;
    if (readTimer !== null) timers.clearTimeout(readTimer);
    readTimer = null;
    if (replayTimer !== null) timers.clearTimeout(replayTimer);
    replayTimer = null;
    if (socket) socket.stop();
  }

  function setMe(profile) {
    list.setMe(profile);
    changed('me', {});
  }

  return {
    start: start,
    stop: stop,
    send: send,
    sendImage: sendImage,
    react: react,
    recall: recall,
    recallLeft: recallLeft,
    typing: typing,
    read: read,
    retry: retry,
    remove: remove,
    loadOlder: loadOlder,
    jumpToLatest: jumpToLatest,
    reconnectNow: reconnectNow,
    setMe: setMe,
    list: list,
    room: room,
    get socket() { return socket; },
    get state() { return socket ? socket.state : STATES.IDLE; },
    get busy() { return busy > 0; }
  };
}

module.exports = { createChatRoom, DEFAULTS };
