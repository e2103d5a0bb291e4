'use strict';
// A fake mini-program runtime for the page tests: App(), Page(), getApp(),
// getCurrentPages() and a `wx` (fake-wx.js) with the UI calls recorded, a
// small chat server behind wx.request (/login, /me, /profile, /history), and
// setData that understands paths (`items[3]`, `a.b`) and records each call.

const path = require('node:path');
const { createFakeWx, MAGIC } = require('./fake-wx');

function clone(v) {
  return v === undefined ? v : JSON.parse(JSON.stringify(v));
}

// applySetData(data, patch): what setData does to this.data.
function applySetData(data, patch) {
  Object.keys(patch).forEach(function (p) {
    const parts = p.match(/[^.[\]]+/g);
    let o = data;
    for (let i = 0; i < parts.length - 1; i++) {
      const k = parts[i];
      if (o[k] === undefined || o[k] === null) o[k] = /^\d+$/.test(parts[i + 1]) ? [] : {};
      o = o[k];
    }
    o[parts[parts.length - 1]] = clone(patch[p]);
  });
}

// A room on the fake server: messages with ids from 1; /history as the real one.
function createRoom() {
  const messages = [];
  let t = Date.now() - 60 * 1000; // a minute ago, a second per message
  return {
    messages: messages,
    add: function (extra) {
      const id = messages.length + 1;
      t += 1000;
      const m = Object.assign({ id: id, number: 2, time: t, uid: 'u-b', nickName: 'Bob', avatarUrl: '', text: true, content: 'm' + id }, extra || {});
      messages.push(m);
      return m;
    },
    frame: function (m, type) { return Object.assign({ type: type || (m.uid === 'u-me' ? 'user' : 'remote') }, m); },
    history: function (before, limit) {
      const b = before || Infinity;
      const l = Math.min(limit || 50, 100);
      // events are folded into their messages, as the real /history does
      const older = messages.filter(function (m) { return m.id < b && m.type !== 'recall' && m.type !== 'reaction'; });
      return older.slice(Math.max(0, older.length - l)).map(function (m) {
        return Object.assign({ type: m.uid === 'u-me' ? 'user' : 'remote' }, m);
      });
    }
  };
}

function runtime() {
  const wx = createFakeWx();
  const calls = { titles: [], toasts: [], previews: [], navigate: [], sheets: [], clipboard: [], modals: [], privacyAnswers: [], reads: [] };
  wx.setNavigationBarTitle = function (o) { calls.titles.push(o.title); };
  wx.showToast = function (o) { calls.toasts.push(o.title); };
  wx.showLoading = function (o) { calls.loading = (calls.loading || 0) + 1; calls.loadingMask = o && o.mask; };
  wx.hideLoading = function () {};
  wx.showModal = function (o) { calls.modals.push(o); };
  wx.previewImage = function (o) { calls.previews.push(o); };
  wx.navigateTo = function (o) { calls.navigate.push(o.url); };
  wx.navigateBack = function () {};
  // the test sets sheetAnswer (tapIndex) before a tap
  wx.showActionSheet = function (o) {
    calls.sheets.push(o.itemList);
    setImmediate(function () { o.success({ tapIndex: wx.sheetAnswer }); });
  };
  // clipboardFail: the errMsg of a refused copy
  wx.setClipboardData = function (o) {
    if (wx.clipboardFail) {
      setImmediate(function () { if (o.fail) o.fail({ errMsg: wx.clipboardFail }); });
      return;
    }
    calls.clipboard.push(o.data);
    setImmediate(function () { if (o.success) o.success({}); });
  };
  wx.chooseMediaImpl = function (o) { o.success({ tempFiles: [{ tempFilePath: 'wxfile://tmp/pic.png', size: 70, fileType: 'image' }], type: 'image' }); };
  wx.chooseMedia = function (o) { calls.chooseMedia = o; wx.chooseMediaImpl(o); };
  // privacy: the test fires needPrivacy(referrer) as the base library would
  wx.privacyNeeded = false;
  wx.onNeedPrivacyAuthorization = function (fn) { wx.privacyListener = fn; };
  wx.getPrivacySetting = function (o) { setImmediate(function () { o.success({ needAuthorization: wx.privacyNeeded, privacyContractName: '《Panda chat room privacy guide》' }); }); };
  wx.openPrivacyContract = function () { calls.contract = (calls.contract || 0) + 1; };
  wx.needPrivacy = function (referrer) {
    wx.privacyListener(function (answer) { calls.privacyAnswers.push(answer); }, { referrer: referrer });
  };
  wx.onNetworkStatusChange = function (fn) { wx.networkListener = fn; };

  const room = createRoom();
  let n = 0;
  wx.requestImpl = function (r) {
    const u = new URL(r.url);
    const p = u.pathname;
    if (p === '/login') return { statusCode: 200, data: { [MAGIC]: 1, session: { id: 's' + (++n), skey: 'k' + n }, userInfo: { uid: 'u-me', nickName: 'Me', avatarUrl: '' } } };
    if (p === '/me') return { statusCode: 200, data: { uid: 'u-me', nickName: 'Me', avatarUrl: 'https://chat.example.com/media/me' } };
    if (p === '/profile') return { statusCode: 200, data: Object.assign({ uid: 'u-me', nickName: 'Me', avatarUrl: 'https://chat.example.com/media/me' }, r.data) };
    // GET /rooms answers wx.roomsAnswer; POST /read is recorded
    if (p === '/rooms') return wx.roomsAnswer ? { statusCode: 200, data: wx.roomsAnswer } : { statusCode: 500, data: { error: 'ERR_UNAVAILABLE', message: 'down' } };
    if (p === '/read') {
      calls.reads.push(r.data);
      return { statusCode: 200, data: { code: 0 } };
    }
    if (p === '/history') {
      return { statusCode: 200, data: room.history(Number(u.searchParams.get('before')) || 0, Number(u.searchParams.get('limit')) || 50), header: { 'X-Last-Id': String(room.messages.length) } };
    }
    return { statusCode: 404, data: '' };
  };
  wx.uploadImpl = function () { return { statusCode: 200, data: { url: 'https://chat.example.com/media/pic', id: 'pic', mime: 'image/png', size: 1, width: 1, height: 1 } }; };

  let appDef = null;
  let pageDef = null;
  const stack = [];
  global.wx = wx;
  global.App = function (d) { appDef = d; };
  global.Page = function (d) { pageDef = d; };
  global.getCurrentPages = function () { return stack.slice(); };
  const root = path.join(__dirname, '..');
  const fresh = function (file) {
    delete require.cache[require.resolve(file)];
    require(file);
  };
  fresh(path.join(root, 'app.js'));
  const app = Object.assign({}, appDef);
  global.getApp = function () { return app; };
  app.onLaunch();
  app.onShow();

  return {
    wx: wx,
    calls: calls,
    app: app,
    room: room,
    client: app.client,
    // load(name) → a page instance (not loaded yet: call onLoad(options))
    load: function (name) {
      fresh(path.join(root, 'pages', name, name + '.js'));
      const page = Object.assign({}, pageDef);
      page.data = clone(pageDef.data);
      page.setDataCalls = [];
      page.setData = function (d) {
        page.setDataCalls.push(clone(d));
        applySetData(this.data, d);
      };
      stack.push(page);
      return page;
    }
  };
}

// let the render timer of a page run
function flushRender() {
  return new Promise(function (r) { setTimeout(r, 45); });
}

module.exports = { runtime, applySetData, createRoom, flushRender };
