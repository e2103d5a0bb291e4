'use strict';
// The pages' logic under a fake mini-program runtime: Page(), getApp(), wx.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { createClient } = require('../utils/client');
const { createFakeWx, settle, MAGIC, CONFIG } = require('./fake-wx');

function runtime() {
  const wx = createFakeWx();
  const calls = { titles: [], toasts: [], previews: [], navigate: [] };
  wx.setNavigationBarTitle = function (o) { calls.titles.push(o.title); };
  wx.showToast = function (o) { calls.toasts.push(o.title); };
  wx.showLoading = function () {};
  wx.hideLoading = function () {};
  wx.showModal = function () {};
  wx.previewImage = function (o) { calls.previews.push(o); };
  wx.navigateTo = function (o) { calls.navigate.push(o.url); };
  wx.navigateBack = function () {};
  wx.chooseMedia = function (o) { o.success({ tempFiles: [{ tempFilePath: 'wxfile://tmp/pic.png' }] }); };
  let n = 0;
  const history = [
    { id: 3, uid: 'u-b', nickName: 'Bob', avatarUrl: '', text: true, content: 'three' },
    { id: 4, uid: 'u-me', nickName: 'Me', avatarUrl: 'https://chat.test/media/me', text: true, content: 'four' }
  ];
  wx.requestImpl = function (r) {
    const p = r.url.replace('https://chat.test', '');
    if (p === '/login') return { statusCode: 200, data: { [MAGIC]: 1, session: { id: 's' + (++n), skey: 'k' + n }, userInfo: { uid: 'u-me', nickName: 'Me', avatarUrl: '' } } };
    if (p === '/me') return { statusCode: 200, data: { uid: 'u-me', nickName: 'Me', avatarUrl: 'https://chat.test/media/me' } };
    if (p === '/profile') return { statusCode: 200, data: Object.assign({ uid: 'u-me' }, r.data) };
    if (p.startsWith('/history')) {
      const before = Number(new URL(r.url).searchParams.get('before')) || Infinity;
      return { statusCode: 200, data: history.filter(function (m) { return m.id < before; }) };
    }
    return { statusCode: 404, data: '' };
  };
  wx.uploadImpl = function () { return { statusCode: 200, data: { url: 'https://chat.test/media/pic', id: 'pic', mime: 'image/png', size: 1, width: 1, height: 1 } }; };
  const client = createClient({ wx: wx, config: CONFIG });
  const app = { client: client, ready: client.auth.ensure() };
  let def = null;
  global.wx = wx;
  global.getApp = function () { return app; };
  global.getCurrentPages = function () { return [{}, {}]; };
  global.Page = function (d) { def = d; };
  return {
    wx: wx,
    calls: calls,
    client: client,
    load: function (name) {
      const file = path.join(__dirname, '..', 'pages', name, name + '.js');
      delete require.cache[require.resolve(file)];
      require(file);
      const page = Object.assign({}, def);
      page.data = JSON.parse(JSON.stringify(def.data));
      page.setData = function (d) { Object.assign(this.data, d); };
      return page;
    }
  };
}

const flushRender = function () { return new Promise(function (r) { setTimeout(r, 50); }); };

test('chat page: history, then socket with since, live frames, title, send, image, preview', async function () {
  const rt = runtime();
  const page = rt.load('chat');
  page.onLoad();
  await settle(10);
  assert.equal(rt.wx.sockets.length, 1);
  const t = rt.wx.sockets[0];
  assert.equal(new URL(t.url).searchParams.get('since'), '4');
  t.serverOpen();
  t.serverSend({ type: 'system', num: 3 });
  t.serverSend({ type: 'remote', id: 5, number: 3, uid: 'u-b', nickName: 'Bob', avatarUrl: '', text: true, content: 'five' });
  await flushRender();
  assert.equal(page.data.connState, 'open');
  assert.deepEqual(rt.calls.titles, ['Panda chat room (3)']);
  assert.deepEqual(page.data.items.map(function (m) { return [m.id, m.own]; }), [[3, false], [4, true], [5, false]]);
  assert.equal(page.data.items[0].initial, 'B');
  assert.equal(page.data.scrollTo, 'msg-5');

  page.onInput({ detail: { value: '  hello  ' } });
  page.onSend();
  assert.equal(page.data.input, '');
  assert.equal(t.sent.length, 1);
  assert.equal(t.sent[0].content, 'hello');
  await flushRender();
  assert.equal(page.data.items[3].pending, true);
  t.serverSend({ type: 'user', id: 6, number: 3, uid: 'u-me', nickName: 'Me', text: true, content: 'hello', cid: t.sent[0].cid });
  await flushRender();
  assert.deepEqual(page.data.items.map(function (m) { return m.key; }), ['m3', 'm4', 'm5', 'm6']);

  page.onChooseImage();
  await settle(10);
  assert.deepEqual(rt.wx.uploads[0].name, 'file');
  assert.deepEqual(t.sent[1], { gallery: true, url: 'https://chat.test/media/pic', cid: t.sent[1].cid });
  t.serverSend({ type: 'user', id: 7, uid: 'u-me', gallery: true, url: 'https://chat.test/media/pic', cid: t.sent[1].cid });
  t.serverSend({ type: 'error', error: 'ERR_RATE_LIMITED', message: 'slow down', cid: 'nope' });
  await flushRender();
  assert.equal(page.data.items[4].gallery, true);
  assert.match(page.data.notice, /too fast/i);
  page.onPreview({ currentTarget: { dataset: { url: 'https://chat.test/media/pic' } } });
  assert.deepEqual(rt.calls.previews[0].urls, ['https://chat.test/media/pic']);

  // a send while disconnected fails visibly and can be retried
  t.serverClose(1006);
  assert.equal(page.data.connState, 'reconnecting');
  page.onInput({ detail: { value: 'later' } });
  page.onSend();
  await flushRender();
  const failed = page.data.items[page.data.items.length - 1];
  assert.equal(failed.failed, true);
  page.onShow(); // back in the foreground: reconnect now
  await settle(10);
  const t2 = rt.wx.sockets[1];
  assert.equal(new URL(t2.url).searchParams.get('since'), '7');
  t2.serverOpen();
  page.onRetry({ currentTarget: { dataset: { cid: failed.cid } } });
  assert.equal(t2.sent[0].content, 'later');

  // history page on scroll to top (the first page was short: nothing more to ask for)
  assert.equal(page.data.noMoreHistory, true);
  const before = rt.wx.requests.length;
  page.onLoadHistory();
  assert.equal(rt.wx.requests.length, before);
  page.setData({ noMoreHistory: false });
  page.onLoadHistory();
  await settle(10);
  assert.match(rt.wx.requests[rt.wx.requests.length - 1].url, /\/history\?room=lobby&before=3&limit=20$/);
  assert.equal(page.data.noMoreHistory, true);

  page.onUnload();
  assert.equal(t2.closed.by, 'client');
});

test('profile page: chooseAvatar upload, nickname, POST /profile', async function () {
  const rt = runtime();
  const page = rt.load('profile');
  page.onLoad();
  await settle(10);
  assert.equal(page.data.nickName, 'Me');
  page.onChooseAvatar({ detail: { avatarUrl: 'wxfile://tmp/avatar.jpg' } });
  assert.equal(page.data.uploading, true);
  await settle(10);
  assert.equal(rt.wx.uploads[0].filePath, 'wxfile://tmp/avatar.jpg');
  assert.equal(page.data.avatarUrl, 'https://chat.test/media/pic');
  page.onSave({ detail: { value: { nickName: ' Panda ' } } });
  await settle(10);
  const post = rt.wx.requests.find(function (r) { return r.url.endsWith('/profile'); });
  assert.deepEqual(post.data, { nickName: 'Panda', avatarUrl: 'https://chat.test/media/pic' });
  assert.deepEqual(rt.calls.toasts, ['Saved']);
  assert.equal(rt.client.session.get().userInfo.nickName, 'Panda');
  page.onSave({ detail: { value: { nickName: '' } } });
  assert.equal(rt.calls.toasts[1], 'Enter a nickname');
});
