'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createClient } = require('../utils/client');
const { createFakeWx, MAGIC, CONFIG } = require('./fake-wx');

function setup() {
  const wx = createFakeWx();
  const client = createClient({ wx: wx, config: CONFIG });
  client.session.set({ id: 'sid', skey: 'skey' }, { uid: 'u1', nickName: 'Panda' });
  return { wx, client };
}

const AUTH = { 'X-WX-Id': 'sid', 'X-WX-Skey': 'skey' };

test('api: GET /me with the session headers, kept with the session', async function () {
  const { wx, client } = setup();
  wx.requestImpl = function () { return { statusCode: 200, data: { uid: 'u1', nickName: 'Bamboo', avatarUrl: 'https://chat.test/media/a' } }; };
  const me = await client.api.me();
  assert.equal(me.nickName, 'Bamboo');
  assert.equal(wx.requests[0].url, 'https://chat.test/me');
  assert.equal(wx.requests[0].method, 'GET');
  assert.deepEqual(wx.requests[0].header, AUTH);
  assert.equal(client.session.get().userInfo.nickName, 'Bamboo');
});

test('api: POST /profile sends {nickName, avatarUrl} as JSON', async function () {
  const { wx, client } = setup();
  wx.requestImpl = function () { return { statusCode: 200, data: { uid: 'u1', nickName: 'Bamboo', avatarUrl: 'https://chat.test/media/a' } }; };
  const p = await client.api.setProfile({ nickName: 'Bamboo', avatarUrl: 'https://chat.test/media/a' });
  const r = wx.requests[0];
  assert.equal(r.url, 'https://chat.test/profile');
  assert.equal(r.method, 'POST');
  assert.deepEqual(r.data, { nickName: 'Bamboo', avatarUrl: 'https://chat.test/media/a' });
  assert.equal(r.header['Content-Type'], 'application/json');
  assert.equal(r.header['X-WX-Skey'], 'skey');
  assert.equal(p.nickName, 'Bamboo');
  assert.equal(client.session.get().userInfo.avatarUrl, 'https://chat.test/media/a');
});

test('api: upload sends field "file" with the session and parses the JSON string', async function () {
  const { wx, client } = setup();
  const media = { url: 'https://chat.test/media/abc', id: 'abc', mime: 'image/png', size: 70, width: 1, height: 1 };
  wx.uploadImpl = function () { return { statusCode: 200, data: JSON.stringify(media) }; };
  const got = await client.api.upload('wxfile://tmp/1.png');
  assert.deepEqual(got, media);
  assert.deepEqual(wx.uploads[0], { url: 'https://chat.test/upload', filePath: 'wxfile://tmp/1.png', name: 'file', header: AUTH });
});

test('api: refused uploads are errors with their status', async function () {
  const { wx, client } = setup();
  wx.uploadImpl = function () { return { statusCode: 415, data: 'unsupported media type' }; };
  await assert.rejects(client.api.upload('x'), { code: 'ERR_HTTP', status: 415 });
  wx.uploadImpl = function () { return { statusCode: 413, data: { error: 'ERR_TOO_LARGE', message: 'too large' } }; };
  await assert.rejects(client.api.upload('x'), { code: 'ERR_TOO_LARGE', status: 413 });
  wx.uploadImpl = function () { return { statusCode: 200, data: '{}' }; };
  await assert.rejects(client.api.upload('x'), { code: 'ERR_BAD_ANSWER' });
});

test('api: history query and id order', async function () {
  const { wx, client } = setup();
  wx.requestImpl = function () { return { statusCode: 200, data: [{ id: 9 }, { id: 7 }, { id: 8 }, { nope: 1 }], header: { 'x-last-id': '12' } }; };
  const list = await client.api.history({ before: 10, limit: 3 });
  assert.deepEqual(list.map(function (m) { return m.id; }), [7, 8, 9]);
  assert.equal(list.lastId, 12, 'the room\'s last id when the page was read (X-Last-Id, any case)');
  assert.equal(wx.requests[0].url, 'https://chat.test/history?room=lobby&before=10&limit=3&v=2');
  assert.deepEqual(wx.requests[0].header, AUTH);
  wx.requestImpl = function () { return { statusCode: 200, data: [], header: { 'X-Last-Id': 'x' } }; };
  const none = await client.api.history({ room: 'r2' });
  assert.equal(wx.requests[1].url, 'https://chat.test/history?room=r2&v=2', 'recalled items and reactions (v=2)');
  assert.equal(none.lastId, undefined);
});

test('api: ERR_INVALID_SESSION on a call → login again once, call again', async function () {
  const { wx, client } = setup();
  wx.requestImpl = function (r) {
    if (r.url.endsWith('/login')) {
      return { statusCode: 200, data: { [MAGIC]: 1, session: { id: 'sid2', skey: 'skey2' }, userInfo: { uid: 'u1' } } };
    }
    if (r.header['X-WX-Skey'] === 'skey') return { statusCode: 401, data: { [MAGIC]: 1, error: 'ERR_INVALID_SESSION', message: 'expired' } };
    return { statusCode: 200, data: { uid: 'u1', nickName: 'Again' } };
  };
  const me = await client.api.me();
  assert.equal(me.nickName, 'Again');
  assert.deepEqual(wx.requests.map(function (r) { return r.url.replace('https://chat.test', ''); }), ['/me', '/login', '/me']);
  assert.equal(wx.requests[1].header['X-WX-Code'], 'code1');
  assert.equal(wx.requests[2].header['X-WX-Skey'], 'skey2');
  assert.equal(client.session.get().id, 'sid2');
});

test('api: uploads log in again on ERR_INVALID_SESSION too, and only once', async function () {
  const { wx, client } = setup();
  let logins = 0;
  wx.requestImpl = function () {
    logins++;
    return { statusCode: 200, data: { [MAGIC]: 1, session: { id: 'n' + logins, skey: 'k' + logins } } };
  };
  wx.uploadImpl = function () { return { statusCode: 401, data: { [MAGIC]: 1, error: 'ERR_INVALID_SESSION' } }; };
  await assert.rejects(client.api.upload('x'), { code: 'ERR_INVALID_SESSION' });
  assert.equal(logins, 1);
  assert.equal(wx.uploads.length, 2);
  assert.equal(wx.uploads[1].header['X-WX-Id'], 'n1');
});
