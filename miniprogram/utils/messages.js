'use strict';
// The chat's message list: server frames merged by id (no duplicates, id
// order), the room's online count, and the user's own messages that are still
// on their way (matched back by `cid`).

let cidCounter = 0;
function defaultCid() {
  cidCounter = (cidCounter + 1) % 1e6;
  return 'c' + Date.now().toString(36) + cidCounter.toString(36) + Math.floor(Math.random() * 1e6).toString(36);
}

const NOTICES = {
  ERR_RATE_LIMITED: 'Sending too fast — wait a moment and tap to retry.',
  ERR_BAD_MESSAGE: 'The server refused this message.',
  ERR_NOT_CONNECTED: 'Not connected — tap to retry.'
};

function noticeFor(code, message) {
  if (code === 'ERR_BAD_MESSAGE' && message) return NOTICES.ERR_BAD_MESSAGE + ' (' + message + ')';
  return NOTICES[code] || message || code || 'Error';
}

function createMessageList(opts) {
  opts = opts || {};
  const newCid = opts.newCid || defaultCid;
  const max = opts.max || 1000;
  let me = opts.me || null; // {uid, nickName, avatarUrl}
  let online = 0;
  let notice = '';
  const byId = new Map();
  let ordered = []; // confirmed messages, ascending id
  let pending = []; // own messages not yet confirmed, in send order

  function isOwn(frame) {
    if (frame.type === 'user') return true;
    if (frame.type === 'remote') return false;
    return !!(me && me.uid && frame.uid === me.uid);
  }

  function normalize(frame) {
    const m = {
      key: 'm' + frame.id,
      domId: 'msg-' + frame.id,
      id: frame.id,
      own: isOwn(frame),
      uid: frame.uid || '',
      nickName: frame.nickName || '',
      avatarUrl: frame.avatarUrl || '',
      time: frame.time || 0,
      pending: false,
      failed: false,
      notice: ''
    };
    if (frame.gallery) {
      m.gallery = true;
      m.url = frame.url || '';
    } else {
      m.text = true;
      m.content = frame.content === undefined ? '' : String(frame.content);
    }
    return m;
  }

  function insert(m) {
    byId.set(m.id, m);
    const n = ordered.length;
    if (n === 0 || ordered[n - 1].id < m.id) {
      ordered.push(m);
    } else {
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (ordered[mid].id < m.id) lo = mid + 1;
        else hi = mid;
      }
      ordered.splice(lo, 0, m);
    }
    if (ordered.length > max) {
      const dropped = ordered.splice(0, ordered.length - max);
      dropped.forEach(function (d) { byId.delete(d.id); });
    }
  }

  function findPending(cid) {
    for (let i = 0; i < pending.length; i++) if (pending[i].cid === cid) return i;
    return -1;
  }

  // An own message came back: drop its pending copy, by cid or else by content.
  function settlePending(frame, m) {
    let i = typeof frame.cid === 'string' ? findPending(frame.cid) : -1;
    if (i < 0 && m.own) {
      for (let j = 0; j < pending.length; j++) {
        const p = pending[j];
        if (p.failed) continue;
        if ((m.gallery && p.gallery && p.url === m.url) || (m.text && p.text && p.content === m.content)) {
          i = j;
          break;
        }
      }
    }
    if (i >= 0) return pending.splice(i, 1)[0].cid;
    return null;
  }

  function addMessage(frame) {
    if (byId.has(frame.id)) return { kind: 'duplicate', id: frame.id };
    if (ordered.length >= max && frame.id < ordered[0].id) return { kind: 'ignored' };
    const m = normalize(frame);
    insert(m);
    const cid = settlePending(frame, m);
    return { kind: 'message', id: m.id, own: m.own, cid: cid };
  }

  // applyFrame(frame) → {kind: system|message|duplicate|error|presence|ignored, ...}
  function applyFrame(frame) {
    if (!frame || typeof frame !== 'object') return { kind: 'ignored' };
    if (frame.error) {
      const code = String(frame.error);
      const text = noticeFor(code, frame.message);
      const i = typeof frame.cid === 'string' ? findPending(frame.cid) : -1;
      if (i >= 0) {
        pending[i].failed = true;
        pending[i].notice = text;
        return { kind: 'error', code: code, cid: frame.cid };
      }
      notice = text;
      return { kind: 'error', code: code, cid: null };
    }
    if (frame.type === 'system' || frame.type === 'presence') {
      if (typeof frame.num === 'number') online = frame.num;
      return { kind: frame.type, online: online };
    }
    if ((frame.type === 'user' || frame.type === 'remote') && typeof frame.id === 'number') {
      if (typeof frame.number === 'number') online = frame.number;
      return addMessage(frame);
    }
    return { kind: 'ignored' };
  }

  // addHistory(list): older messages from GET /history; → how many were new.
  function addHistory(list) {
    let added = 0;
    (list || []).forEach(function (frame) {
      if (frame && typeof frame.id === 'number' && addMessage(frame).kind === 'message') added++;
    });
    return added;
  }

  // addPending({text: 'hi'}) or ({url: 'https://…'}) → {cid, frame}: the frame to send.
  function addPending(what) {
    const cid = newCid();
    const p = { cid: cid, failed: false, notice: '', time: Date.now() };
    let frame;
    if (what && typeof what.url === 'string') {
      p.gallery = true;
      p.url = what.url;
      frame = { gallery: true, url: what.url, cid: cid };
    } else {
      p.text = true;
      p.content = String((what && what.text) || '');
      frame = { text: true, content: p.content, cid: cid };
    }
    pending.push(p);
    return { cid: cid, frame: frame };
  }

  function failPending(cid, code) {
    const i = findPending(cid);
    if (i < 0) return false;
    pending[i].failed = true;
    pending[i].notice = noticeFor(code || 'ERR_NOT_CONNECTED');
    return true;
  }

  // retryPending(cid) → the frame to send again, or null.
  function retryPending(cid) {
    const i = findPending(cid);
    if (i < 0) return null;
    const p = pending[i];
    p.failed = false;
    p.notice = '';
    return p.gallery ? { gallery: true, url: p.url, cid: cid } : { text: true, content: p.content, cid: cid };
  }

  function removePending(cid) {
    const i = findPending(cid);
    if (i >= 0) pending.splice(i, 1);
    return i >= 0;
  }

  // view(): what the page renders — confirmed messages, then own pending ones.
  function view() {
    const who = me || {};
    return ordered.concat(pending.map(function (p) {
      const v = {
        key: 'p' + p.cid,
        domId: 'pending-' + p.cid,
        id: 0,
        own: true,
        uid: who.uid || '',
        nickName: who.nickName || '',
        avatarUrl: who.avatarUrl || '',
        time: p.time,
        pending: !p.failed,
        failed: p.failed,
        notice: p.notice,
        cid: p.cid
      };
      if (p.gallery) {
        v.gallery = true;
        v.url = p.url;
      } else {
        v.text = true;
        v.content = p.content;
      }
      return v;
    }));
  }

  return {
    applyFrame,
    addHistory,
    addPending,
    failPending,
    retryPending,
    removePending,
    view,
    setMe: function (profile) { me = profile || null; },
    clearNotice: function () { notice = ''; },
    get online() { return online; },
    get notice() { return notice; },
    get messages() { return ordered.slice(); },
    get pending() { return pending.map(function (p) { return Object.assign({}, p); }); },
    get firstId() { return ordered.length ? ordered[0].id : undefined; },
    get lastId() { return ordered.length ? ordered[ordered.length - 1].id : undefined; }
  };
}

module.exports = { createMessageList, noticeFor };
