'use strict';
// The chat's message list, a model without wx calls:
//
// - confirmed messages, merged by id (no duplicates, id order), held as one
//   window of at most `max` messages with no hole in it;
// - the user's own messages on their way (matched back by `cid`): uploading,
//   queued (not yet handed to an open socket), sent (waiting for the echo),
//   failed (shown with a notice; sent again or deleted by the user);
// - the room's online count.
//
// Window rules:
// - a live message beyond the newest one held by more than 1 opens a gap
//   (a replay that skipped what the server did not replay); the chat fills it
//   from /history (fillGap) or, when it is too large, cuts the window above it
//   (cutGap) so that scrolling up pages the rest;
// - more than `max` messages: live ones push the oldest out (hasOlder becomes
//   true); an older history page pushes the newest out (atLatest becomes
//   false: live messages then wait in a bounded tail until addLatest).
//
// Recall and reaction events (protocol.md §8) take ids of the room's
// sequence too: they move the newest id seen (so they open no false gap and
// since counts them) and change the message they target, when it is held.
// In a /history page they are only markers: the page's messages carry their
// state already (recalled, aggregated reactions). Typing and the room's
// members (for @) are kept here as well, so that the page only renders.

const timefmt = require('./time');
const extras = require('./extras');

let cidCounter = 0;
function defaultCid() {
  cidCounter = (cidCounter + 1) % 1e6;
  return 'c' + Date.now().toString(36) + cidCounter.toString(36) + Math.floor(Math.random() * 1e6).toString(36);
}

const NOTICES = {
  ERR_RATE_LIMITED: 'Sending too fast — tap to send again.',
  ERR_BAD_MESSAGE: 'The server refused this message.',
  ERR_UNAVAILABLE: 'The server could not store it — tap to send again.',
  ERR_NOT_SENT: 'Not sent — tap to send again or delete.',
  ERR_NOT_CONNECTED: 'Not connected — tap to send again.',
  ERR_UPLOAD: 'Upload failed — tap to try again.',
  ERR_TOO_LARGE: 'Image too large.',
  ERR_QUOTA: 'Upload quota reached.',
  ERR_NOT_ALLOWED: 'Only your own messages can be recalled, within 2 minutes.'
};

function noticeFor(code, message) {
  if ((code === 'ERR_BAD_MESSAGE' || code === 'ERR_QUOTA') && message) return NOTICES[code] + ' (' + message + ')';
  return NOTICES[code] || message || code || 'Error';
}

function initial(name) {
  return name ? String(name).slice(0, 1).toUpperCase() : '?';
}

// A pending message whose replayed copy (an own message without cid, same
// content) showed up is hidden, and still re-sent with its cid (idempotent on
// the server). After SHADOW_TRUST the server no longer knows the cid, so the
// replayed copy stands for it instead.
const SHADOW_TRUST = 110 * 1000;

function createMessageList(opts) {
  opts = opts || {};
  const newCid = opts.newCid || defaultCid;
  const max = opts.max || 500;
  const now = opts.now || Date.now;
  let me = opts.me || null; // {uid, nickName, avatarUrl}
  let online = 0;
  let notice = '';
  const byId = new Map();
  let ordered = []; // confirmed messages, ascending id, no hole
  let pending = []; // own messages not yet confirmed, in send order
  let tail = []; // live frames that came while !atLatest, ascending id
  let gaps = []; // [{from, to}] ids missing inside the window, oldest first
  let hasOlder = true;
  let atLatest = true;
  let eventTop = 0; // the newest event id seen at the live end
  const typists = extras.createTypists(opts.typingShow);
  const members = extras.createMembers();

  function isOwn(frame) {
    if (frame.type === 'user') return true;
    if (frame.type === 'remote') return false;
    return !!(me && me.uid && frame.uid === me.uid);
  }

  // normalize(frame, horizon): horizon, for an item of a /history page, is the
  // room's last id when the page was read (extras.extrasOf)
  function normalize(frame, horizon) {
    const m = {
      key: 'm' + frame.id,
      domId: 'msg-' + frame.id,
      id: frame.id,
      own: isOwn(frame),
      uid: frame.uid || '',
      nickName: frame.nickName || '',
      avatarUrl: frame.avatarUrl || '',
      time: typeof frame.time === 'number' ? frame.time : 0,
      x: extras.extrasOf(frame, me && me.uid, horizon)
    };
    if (Array.isArray(frame.mentions)) {
      m.mentions = frame.mentions.filter(function (u) { return typeof u === 'string'; }).slice(0, extras.MAX_MENTIONS);
    }
    if (!m.x.recalled) members.see(m.uid, m.nickName);
    if (frame.gallery) {
      m.gallery = true;
      m.url = frame.url || '';
    } else {
      m.text = true;
      m.content = frame.content === undefined ? '' : String(frame.content);
    }
    return m;
  }

  function firstId() { return ordered.length ? ordered[0].id : undefined; }
  function lastId() { return ordered.length ? ordered[ordered.length - 1].id : undefined; }
  // the newest id seen at the live end, events included
  function topId() {
    const l = lastId();
    if (typeof l !== 'number') return eventTop > 0 ? eventTop : undefined;
    return Math.max(l, eventTop);
  }

  function insert(m) {
    byId.set(m.id, m);
    const n = ordered.length;
    if (n === 0 || ordered[n - 1].id < m.id) {
      ordered.push(m);
      return;
    }
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ordered[mid].id < m.id) lo = mid + 1;
      else hi = mid;
    }
    ordered.splice(lo, 0, m);
  }

  function dropGapsBelow(id) {
    gaps = gaps.filter(function (g) { return g.to >= id; });
  }

  // live messages push the oldest out: there is older history again
  function trimOldest() {
    if (ordered.length <= max) return 0;
    const dropped = ordered.splice(0, ordered.length - max);
    dropped.forEach(function (d) { byId.delete(d.id); });
    hasOlder = true;
    dropGapsBelow(ordered[0].id);
    return dropped.length;
  }

  // an older page pushes the newest out: the window no longer reaches the live end
  function trimNewest() {
    if (ordered.length <= max) return 0;
    const dropped = ordered.splice(max);
    dropped.forEach(function (d) { byId.delete(d.id); });
    atLatest = false;
    const top = lastId();
    gaps = gaps.filter(function (g) { return g.from <= top; });
    return dropped.length;
  }

  function findPending(cid) {
    for (let i = 0; i < pending.length; i++) if (pending[i].cid === cid) return i;
    return -1;
  }

  // An own message came back with its cid: the pending copy is done.
  function settleByCid(frame) {
    if (typeof frame.cid !== 'string') return null;
    const i = findPending(frame.cid);
    if (i < 0) return null;
    return pending.splice(i, 1)[0].cid;
  }

  // An own message came back without cid (a replay after a reconnect): hide
  // the first pending copy with the same content; its re-send with the same
  // cid confirms it (or stores it, if the copy was another message).
  function shadowByContent(m) {
    if (!m.own) return;
    for (let j = 0; j < pending.length; j++) {
      const p = pending[j];
      if (p.shadow || p.state === 'failed' || p.state === 'uploading') continue;
      if ((m.gallery && p.gallery && p.url === m.url) || (m.text && p.text && p.content === m.content)) {
        p.shadow = m.id;
        return;
      }
    }
  }

  function keepTail(frame) {
    if (tail.some(function (f) { return f.id === frame.id; })) return;
    tail.push(frame);
    tail.sort(function (a, b) { return a.id - b.id; });
    if (tail.length > max) tail.splice(0, tail.length - max);
  }

  // a message landed inside a gap (an echo of a re-sent cid): the gap shrinks
  function closeInGap(id) {
    const out = [];
    gaps.forEach(function (g) {
      if (id < g.from || id > g.to) out.push(g);
      else {
        if (id > g.from) out.push({ from: g.from, to: id - 1 });
        if (id < g.to) out.push({ from: id + 1, to: g.to });
      }
    });
    gaps = out;
  }

  // a live (or replayed) message frame
  function addMessage(frame) {
    const cid = settleByCid(frame);
    if (byId.has(frame.id)) return { kind: 'duplicate', id: frame.id, cid: cid };
    if (!atLatest) {
      keepTail(frame);
      return { kind: 'detached', id: frame.id, own: isOwn(frame), cid: cid };
    }
    // an echo of a message older than the window (an old cid sent again)
    if (ordered.length && frame.id < ordered[0].id) return { kind: 'old', id: frame.id, cid: cid };
    const top = topId();
    let gap = null;
    if (typeof top === 'number' && frame.id > top + 1) {
      gap = { from: top + 1, to: frame.id - 1 };
      gaps.push(gap);
    } else if (typeof top === 'number' && frame.id < top) {
      closeInGap(frame.id);
    }
    const m = normalize(frame);
    insert(m);
    typists.remove(m.uid); // their message is here
    if (!cid) shadowByContent(m);
    trimOldest();
    return { kind: 'message', id: m.id, own: m.own, cid: cid, gap: gap ? { from: gap.from, to: gap.to } : null };
  }

  // a live (or replayed) recall or reaction
  function addEvent(frame) {
    if (!atLatest) {
      keepTail(frame);
      return { kind: 'event', id: frame.id, target: frame.target, changed: false, detached: true };
    }
    const top = topId();
    let gap = null;
    if (typeof top === 'number' && frame.id > top + 1 && ordered.length) {
      gap = { from: top + 1, to: frame.id - 1 };
      gaps.push(gap);
    } else if (typeof top === 'number' && frame.id < top) {
      closeInGap(frame.id);
    }
    if (frame.id > eventTop) eventTop = frame.id;
    const m = byId.get(frame.target);
    const changed = !!m && extras.applyEvent(m.x, frame, me && me.uid);
    return { kind: 'event', id: frame.id, target: frame.target, changed: changed, gap: gap ? { from: gap.from, to: gap.to } : null };
  }

  // applyFrame(frame) → {kind: system|presence|message|duplicate|detached|old|error|ignored, ...}
  function applyFrame(frame) {
    if (!frame || typeof frame !== 'object') return { kind: 'ignored' };
    if (frame.error) {
      const code = String(frame.error);
      const text = noticeFor(code, frame.message);
      const i = typeof frame.cid === 'string' ? findPending(frame.cid) : -1;
      if (i >= 0) {
        pending[i].state = 'failed';
        pending[i].shadow = 0;
        pending[i].notice = text;
        return { kind: 'error', code: code, cid: frame.cid };
      }
      notice = text;
      return { kind: 'error', code: code, cid: null };
    }
    if (frame.type === 'system' || frame.type === 'presence') {
      if (typeof frame.num === 'number') online = frame.num;
      if (frame.type === 'presence' && frame.event === 'join') members.see(frame.uid, frame.nickName);
      return { kind: frame.type, online: online };
    }
    if (extras.isEvent(frame)) return addEvent(frame);
    if (frame.type === 'typing') {
      if (typeof frame.uid !== 'string' || (me && frame.uid === me.uid)) return { kind: 'ignored' };
      members.see(frame.uid, frame.nickName);
      typists.add(frame.uid, frame.nickName, now());
      return { kind: 'typing', uid: frame.uid };
    }
    if ((frame.type === 'user' || frame.type === 'remote') && typeof frame.id === 'number') {
      if (typeof frame.number === 'number') online = frame.number;
      return addMessage(frame);
    }
    return { kind: 'ignored' };
  }

  function usable(list) {
    return (list || []).filter(function (f) { return f && typeof f.id === 'number'; });
  }

  // a /history item that is a message (not an event marker)
  function isMsg(f) {
    return !extras.isEvent(f);
  }

  // the room's last id when a /history page was read (0: not known)
  function horizonOf(page) {
    return page && typeof page.lastId === 'number' ? page.lastId : 0;
  }

  // addLatest(page, limit): the newest history page (at start, or to come
  // back to the live end): the window becomes this page plus the live frames
  // kept meanwhile. limit: the page size asked for (a full page → more older).
  function addLatest(page, limit) {
    const live = tail.filter(extras.isEvent); // events that came while detached: applied below
    const fromPage = new Set(usable(page));
    const horizon = horizonOf(page);
    const frames = usable(page).concat(tail).sort(function (a, b) { return a.id - b.id; });
    ordered = [];
    byId.clear();
    gaps = [];
    tail = [];
    atLatest = true;
    eventTop = 0;
    const pageLen = usable(page).length;
    hasOlder = pageLen > 0 && pageLen >= (limit || 1) && frames[0].id > 1;
    let prev;
    frames.forEach(function (f) {
      if (f.id === prev) return;
      if (typeof prev === 'number' && f.id > prev + 1) gaps.push({ from: prev + 1, to: f.id - 1 });
      prev = f.id;
      if (extras.isEvent(f)) {
        if (f.id > eventTop) eventTop = f.id;
        return;
      }
      if (!byId.has(f.id)) insert(normalize(f, fromPage.has(f) ? horizon : 0));
    });
    // the page holds the events up to its horizon: since may start there
    if (horizon > eventTop && (!ordered.length || horizon >= lastId())) eventTop = horizon;
    live.forEach(function (f) {
      const m = byId.get(f.target);
      if (m) extras.applyEvent(m.x, f, me && me.uid);
    });
    trimOldest();
    return ordered.length;
  }

  // addOlder(page, limit) → {added, dropped}: a page from /history?before=firstId.
  // hasOlder stays true only for a full page that brought something new.
  function addOlder(page, limit) {
    const first = firstId();
    let added = 0;
    let lowest;
    usable(page).forEach(function (f) {
      if (typeof lowest !== 'number' || f.id < lowest) lowest = f.id;
      if (!isMsg(f) || byId.has(f.id) || (typeof first === 'number' && f.id > first)) return;
      insert(normalize(f, horizonOf(page)));
      added++;
    });
    hasOlder = added > 0 && usable(page).length >= (limit || 1) && lowest > 1;
    const dropped = trimNewest();
    return { added: added, dropped: dropped };
  }

  // fillGap(page, limit, before) → {open, before}: a page from
  // /history?before=<the id right above the newest gap>. open: more of that
  // gap to fetch, from before. A page asked for another place is left out.
  function fillGap(page, limit, before) {
    const g = gaps[gaps.length - 1];
    if (!g) return { open: false };
    if (typeof before === 'number' && before !== g.to + 1) return { open: true, before: g.to + 1, stale: true };
    const frames = usable(page);
    let lowest;
    frames.forEach(function (f) {
      if (typeof lowest !== 'number' || f.id < lowest) lowest = f.id;
      if (!isMsg(f) || f.id < g.from || f.id > g.to || byId.has(f.id)) return;
      insert(normalize(f, horizonOf(page)));
    });
    trimOldest();
    if (gaps.indexOf(g) < 0) return { open: false }; // pushed out from below
    if (!frames.length || frames.length < (limit || 1) || lowest <= g.from) {
      gaps.splice(gaps.indexOf(g), 1);
      return { open: false };
    }
    g.to = lowest - 1;
    return { open: true, before: lowest };
  }

  // cutGap(): give up filling the newest gap: drop everything below it, so the
  // window has no hole and scrolling up pages the rest from /history.
  function cutGap() {
    const g = gaps[gaps.length - 1];
    if (!g) return 0;
    let n = 0;
    while (ordered.length && ordered[0].id <= g.to) {
      byId.delete(ordered.shift().id);
      n++;
    }
    gaps = [];
    hasOlder = true;
    return n;
  }

  function frameOf(p) {
    if (p.gallery) return { gallery: true, url: p.url, cid: p.cid };
    const f = { text: true, content: p.content, cid: p.cid };
    if (p.mentions && p.mentions.length) f.mentions = p.mentions.slice();
    return f;
  }

  function newPending(extra) {
    return Object.assign({ cid: newCid(), state: 'queued', attempts: 0, firstSent: 0, notice: '', time: now(), shadow: 0, progress: 0 }, extra);
  }

  // addPending({text: 'hi', mentions: [uid]}) or ({url: 'https://…'}) → {cid, frame}: the frame to send.
  function addPending(what) {
    const mentions = what && Array.isArray(what.mentions) ? what.mentions.slice(0, extras.MAX_MENTIONS) : [];
    const p = (what && typeof what.url === 'string')
      ? newPending({ gallery: true, url: what.url })
      : newPending({ text: true, content: String((what && what.text) || ''), mentions: mentions });
    pending.push(p);
    return { cid: p.cid, frame: frameOf(p) };
  }

  // addUpload(localPath) → cid: an image bubble shown from the local file while it uploads.
  function addUpload(localPath) {
    const p = newPending({ gallery: true, url: '', localPath: String(localPath), state: 'uploading' });
    pending.push(p);
    return p.cid;
  }

  function setProgress(cid, pct) {
    const i = findPending(cid);
    if (i < 0 || pending[i].state !== 'uploading') return false;
    const v = Math.max(0, Math.min(100, Math.round(Number(pct) || 0)));
    if (v === pending[i].progress) return false;
    pending[i].progress = v;
    return true;
  }

  // uploadDone(cid, url) → the gallery frame to send, or null.
  function uploadDone(cid, url) {
    const i = findPending(cid);
    if (i < 0) return null;
    const p = pending[i];
    p.url = url;
    p.state = 'queued';
    p.progress = 100;
    return frameOf(p);
  }

  // unsent(): the pending messages to hand to the socket now (queued, and sent
  // ones without an echo: after a reconnect they go again with the same cid).
  function unsent() {
    const t = now();
    pending = pending.filter(function (p) {
      return !(p.shadow && p.firstSent && t - p.firstSent > SHADOW_TRUST);
    });
    return pending.filter(function (p) { return p.state === 'queued' || p.state === 'sent'; })
      .map(function (p) { return { cid: p.cid, state: p.state, attempts: p.attempts, firstSent: p.firstSent, frame: frameOf(p) }; });
  }

  // markSent(cid) → how many times it was handed to an open socket.
  function markSent(cid) {
    const i = findPending(cid);
    if (i < 0) return 0;
    const p = pending[i];
    p.attempts++;
    p.state = 'sent';
    if (!p.firstSent) p.firstSent = now();
    return p.attempts;
  }

  function failPending(cid, code, message) {
    const i = findPending(cid);
    if (i < 0) return false;
    pending[i].state = 'failed';
    pending[i].shadow = 0;
    pending[i].notice = noticeFor(code || 'ERR_NOT_CONNECTED', message);
    return true;
  }

  // retryPending(cid) → {frame} to send again, {upload: localPath} to upload
  // again, or null. The attempt count starts over.
  function retryPending(cid) {
    const i = findPending(cid);
    if (i < 0) return null;
    const p = pending[i];
    p.notice = '';
    p.attempts = 0;
    p.shadow = 0;
    if (p.gallery && !p.url && p.localPath) {
      p.state = 'uploading';
      p.progress = 0;
      return { upload: p.localPath };
    }
    p.state = 'queued';
    return { frame: frameOf(p) };
  }

  function removePending(cid) {
    const i = findPending(cid);
    if (i >= 0) pending.splice(i, 1);
    return i >= 0;
  }

  function nameOf(uid) {
    if (me && uid === me.uid && me.nickName) return me.nickName;
    return members.name(uid);
  }

  // spans(content, mentions) → [{text, at, me}] when the text mentions
  // someone (rendered as <text> pieces), else null.
  function spans(content, mentions) {
    if (!mentions || !mentions.length) return null;
    const meUid = me && me.uid;
    const out = extras.mentionSpans(content, mentions, nameOf, meUid);
    if (out.length === 1 && !out[0].uid) return null;
    return out.map(function (s) { return s.uid ? { text: s.text, at: true, me: !!s.me } : { text: s.text }; });
  }

  function messageView(m) {
    const v = {
      key: m.key,
      domId: m.domId,
      id: m.id,
      own: m.own,
      nickName: m.nickName,
      avatarUrl: m.avatarUrl,
      initial: initial(m.nickName),
      time: m.time
    };
    if (m.x.recalled) {
      v.recalled = true;
      v.recallText = extras.recallLabel(m.nickName, m.own);
      return v;
    }
    const chips = extras.chips(m.x);
    if (chips.length) v.reactions = chips;
    if (extras.mentionsMe(m, me && me.uid)) v.mentioned = true;
    if (m.gallery) {
      v.gallery = true;
      v.url = m.url;
    } else {
      v.text = true;
      v.content = m.content;
      const sp = spans(m.content, m.mentions);
      if (sp) v.spans = sp;
    }
    return v;
  }

  function pendingView(p) {
    const who = me || {};
    const v = {
      key: 'p' + p.cid,
      domId: 'pending-' + p.cid,
      id: 0,
      own: true,
      nickName: who.nickName || '',
      avatarUrl: who.avatarUrl || '',
      initial: initial(who.nickName),
      time: p.time,
      cid: p.cid,
      pending: p.state !== 'failed',
      failed: p.state === 'failed',
      notice: p.notice
    };
    if (p.state === 'uploading') {
      v.uploading = true;
      v.progress = p.progress;
    }
    if (p.gallery) {
      v.gallery = true;
      v.url = p.url || p.localPath || '';
    } else {
      v.text = true;
      v.content = p.content;
      const sp = spans(p.content, p.mentions);
      if (sp) v.spans = sp;
    }
    return v;
  }

  // view(): what the page renders — the window, then (at the live end) own
  // pending messages; time separators (timeLabel) from `time`.
  function view() {
    const items = ordered.map(messageView);
    if (atLatest) {
      pending.forEach(function (p) { if (!p.shadow) items.push(pendingView(p)); });
    }
    const t = now();
    let prev;
    items.forEach(function (v) {
      if (timefmt.needsSeparator(prev, v.time)) v.timeLabel = timefmt.label(v.time, t);
      if (v.time > 0) prev = v.time;
      delete v.time;
    });
    return items;
  }

  return {
    applyFrame,
    addLatest,
    addOlder,
    fillGap,
    cutGap,
    addPending,
    addUpload,
    setProgress,
    uploadDone,
    unsent,
    markSent,
    failPending,
    retryPending,
    removePending,
    view,
    // message(id) → the held message {id, uid, own, time, x, …} or undefined
    message: function (id) { return byId.get(id); },
    // recallLeft(id, serverNow) → ms the user may still recall message id
    recallLeft: function (id, serverNow) {
      const m = byId.get(id);
      if (!m) return 0;
      return extras.recallLeft({ id: m.id, type: m.own ? 'user' : 'remote', uid: m.uid, time: m.time }, me && me.uid, serverNow, m.x);
    },
    typingLabel: function () { return typists.label(now()); },
    // typingNext() → ms until the typing line changes by itself (-1: never)
    typingNext: function () { return typists.nextChange(now()); },
    members: function () { return members.list(); },
    setMe: function (profile) { me = profile || null; },
    clearNotice: function () { notice = ''; },
    get max() { return max; },
    get online() { return online; },
    get notice() { return notice; },
    get hasOlder() { return hasOlder; },
    get atLatest() { return atLatest; },
    get gaps() { return gaps.map(function (g) { return { from: g.from, to: g.to }; }); },
    get tailSize() { return tail.length; },
    get messages() { return ordered.slice(); },
    get pending() { return pending.map(function (p) { return Object.assign({}, p); }); },
    get firstId() { return firstId(); },
    get lastId() { return lastId(); },
    // the newest id seen at the live end, events included (since=)
    get topId() { return topId(); }
  };
}

module.exports = { createMessageList, noticeFor, SHADOW_TRUST };
