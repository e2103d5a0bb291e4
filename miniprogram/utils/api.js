'use strict';
// Authenticated calls to the chat server. Every call carries X-WX-Id and
// X-WX-Skey; an ERR_INVALID_SESSION answer logs in again once (see login.js).

const http = require('./http');
const urls = require('./url');
const extras = require('./extras');

function authHeader(s) {
  return { 'X-WX-Id': s.id, 'X-WX-Skey': s.skey };
}

function createApi(opts) {
  const wx = opts.wx;
  const config = opts.config;
  const auth = opts.auth;
  const base = function () { return urls.httpBase(config); };

  function call(method, path, data) {
    return auth.withSession(function (s) {
      const header = authHeader(s);
      if (data !== undefined) header['Content-Type'] = 'application/json';
      return http.request(wx, { url: base() + path, method: method, header: header, data: data });
    }).then(http.expectOk);
  }

  // GET /me → the public profile {uid, nickName, avatarUrl, ...}; also kept with the session.
  function me() {
    return call('GET', '/me').then(function (profile) {
      if (profile && typeof profile === 'object') auth.session.setUserInfo(profile);
      return profile;
    });
  }

  // POST /profile {nickName, avatarUrl}; only the given fields are sent.
  function setProfile(p) {
    const body = {};
    if (p && p.nickName !== undefined) body.nickName = p.nickName;
    if (p && p.avatarUrl !== undefined) body.avatarUrl = p.avatarUrl;
    return call('POST', '/profile', body).then(function (answer) {
      const current = auth.session.get();
      const merged = Object.assign({}, current && current.userInfo, body,
        answer && typeof answer === 'object' && !Array.isArray(answer) ? answer : {});
      auth.session.setUserInfo(merged);
      return merged;
    });
  }

  // wx.uploadFile to /upload, form field `file` → {url, id, mime, size, width, height}.
  // o.onProgress(percent): upload progress (UploadTask.onProgressUpdate).
  function upload(filePath, o) {
    const onProgress = o && o.onProgress;
    return auth.withSession(function (s) {
      return http.uploadFile(wx, { url: base() + '/upload', filePath: filePath, name: 'file', header: authHeader(s), onProgress: onProgress });
    }).then(http.expectOk).then(function (media) {
      if (!media || typeof media !== 'object' || typeof media.url !== 'string') {
        throw new http.PandaError('ERR_BAD_ANSWER', 'upload answer has no url');
      }
      return media;
    });
  }

  // GET /history?room=&before=&limit=&v=2 → messages sorted by id (oldest
  // first), recalled ones as such and each with its reactions (v=2). The
  // list's lastId is the room's last id when the page was read (X-Last-Id):
  // the page holds every event up to it.
  function history(q) {
    q = q || {};
    const path = urls.withQuery('/history', { room: q.room || config.room || 'lobby', before: q.before, limit: q.limit, v: 2 });
    let lastId;
    return auth.withSession(function (s) {
      return http.request(wx, { url: base() + path, method: 'GET', header: authHeader(s) });
    }).then(function (res) {
      lastId = Number(http.headerOf(res, 'X-Last-Id'));
      return http.expectOk(res);
    }).then(function (body) {
      const list = Array.isArray(body) ? body : (body && Array.isArray(body.messages) ? body.messages : null);
      if (!list) throw new http.PandaError('ERR_BAD_ANSWER', 'history answer is not a list');
      const out = list.filter(function (m) { return m && typeof m.id === 'number'; })
        .sort(function (a, b) { return a.id - b.id; });
      if (lastId > 0 && Math.floor(lastId) === lastId) out.lastId = lastId;
      return out;
    });
  }

  // GET /rooms → [{room, lastId, readId, unread}]: the rooms the user is in,
  // with how far the user has read each (extras.parseRooms).
  function rooms() {
    return call('GET', '/rooms').then(extras.parseRooms);
  }

  // POST /read {room, id}: the user has seen the room up to id.
  function read(room, id) {
    return call('POST', '/read', { room: room, id: id });
  }

  return { me, setProfile, upload, history, rooms, read };
}

module.exports = { createApi };
