'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createSession } = require('../utils/session');
const { createAuth } = require('../utils/login');
const { createFakeWx, MAGIC, CONFIG } = require('./fake-wx');

function setup() {
  const wx = createFakeWx();
  const session = createSession(wx);
  const auth = createAuth({ wx: wx, config: CONFIG, session: session });
  return { wx, session, auth };
}

function okLogin(n) {
  return { statusCode: 200, data: { [MAGIC]: 1, session: { id: 'id' + n, skey: 'skey' + n }, userInfo: { uid: 'u1', nickName: 'Panda' + n, avatarUrl: '' } } };
}

test('login: code in X-WX-Code, session stored', async function () {
  const { wx, session, auth } = setup();
  wx.requestImpl = function () { return okLogin(1); };
  const s = await auth.login();
  assert.equal(wx.requests.length, 1);
  const r = wx.requests[0];
  assert.equal(r.url, 'https://chat.test/login');
  assert.equal(r.method, 'GET');
  assert.deepEqual(r.header, { 'X-WX-Code': 'code1' });
  assert.deepEqual(s, { id: 'id1', skey: 'skey1', userInfo: { uid: 'u1', nickName: 'Panda1', avatarUrl: '' } });
  assert.deepEqual(session.get(), s);
  assert.deepEqual(wx.getStorageSync('panda_session').id, 'id1');
});

test('login: an error answer is an error and stores nothing', async function () {
  const { wx, session, auth } = setup();
  wx.requestImpl = function () {
    return { statusCode: 401, data: { [MAGIC]: 1, error: 'ERR_LOGIN_FAILED', message: 'errcode 40029: invalid code' } };
  };
  await assert.rejects(auth.login(), function (e) {
    assert.equal(e.code, 'ERR_LOGIN_FAILED');
    assert.equal(e.status, 401);
    assert.match(e.message, /40029/);
    return true;
  });
  assert.equal(session.get(), null);
});

test('login: an answer without the session marker is refused', async function () {
  const { wx, auth } = setup();
  wx.requestImpl = function () { return { statusCode: 200, data: { hello: 'world' } }; };
  await assert.rejects(auth.login(), { code: 'ERR_LOGIN_FAILED' });
  wx.requestImpl = function () { return { statusCode: 502, data: '<html>bad gateway</html>' }; };
  await assert.rejects(auth.login(), { code: 'ERR_LOGIN_FAILED', status: 502 });
});

test('login: wx.login or network failures are errors', async function () {
  const { wx, auth } = setup();
  wx.loginImpl = function () { throw new Error('no network'); };
  await assert.rejects(auth.login(), { code: 'ERR_WX_LOGIN' });
  assert.equal(wx.requests.length, 0);
  wx.loginImpl = function () { return { code: 'c' }; };
  wx.requestImpl = function () { throw new Error('timeout'); };
  await assert.rejects(auth.login(), { code: 'ERR_NETWORK' });
});

test('login: concurrent callers share one login; ensure reuses the stored session', async function () {
  const { wx, auth } = setup();
  wx.requestImpl = function () { return okLogin(1); };
  const [a, b] = await Promise.all([auth.login(), auth.ensure()]);
  assert.equal(wx.logins, 1);
  assert.equal(wx.requests.length, 1);
  assert.deepEqual(a, b);
  await auth.ensure();
  assert.equal(wx.requests.length, 1);
});

test('login: check() asks the server with the session; invalid clears it', async function () {
  const { wx, session, auth } = setup();
  assert.equal(await auth.check(), false);
  session.set({ id: 'i', skey: 'k' });
  wx.requestImpl = function () { return { statusCode: 200, data: { code: 0, message: 'ok' } }; };
  assert.equal(await auth.check(), true);
  assert.deepEqual(wx.requests[0].header, { 'X-WX-Id': 'i', 'X-WX-Skey': 'k' });
  wx.requestImpl = function () { return { statusCode: 401, data: { [MAGIC]: 1, error: 'ERR_INVALID_SESSION', message: 'expired' } }; };
  assert.equal(await auth.check(), false);
  assert.equal(session.get(), null);
});

test('login: ERR_INVALID_SESSION clears the session and logs in again once', async function () {
  const { wx, session, auth } = setup();
  session.set({ id: 'old', skey: 'stale' });
  let n = 0;
  const seen = [];
  wx.requestImpl = function (r) {
    if (r.url.endsWith('/login')) return okLogin(++n);
    return { statusCode: 200, data: { ok: true } };
  };
  const res = await auth.withSession(function (s) {
    seen.push(s.skey);
    if (s.skey === 'stale') return Promise.resolve({ statusCode: 401, data: { [MAGIC]: 1, error: 'ERR_INVALID_SESSION' } });
    return Promise.resolve({ statusCode: 200, data: { ok: true } });
  });
  assert.deepEqual(res.data, { ok: true });
  assert.deepEqual(seen, ['stale', 'skey1']);
  assert.equal(wx.logins, 1);
  assert.equal(session.get().skey, 'skey1');
});

test('login: a second ERR_INVALID_SESSION is an error, not a loop', async function () {
  const { wx, session, auth } = setup();
  session.set({ id: 'old', skey: 'stale' });
  let n = 0;
  wx.requestImpl = function () { return okLogin(++n); };
  let calls = 0;
  await assert.rejects(auth.withSession(function () {
    calls++;
    return Promise.resolve({ statusCode: 401, data: { [MAGIC]: 1, error: 'ERR_INVALID_SESSION' } });
  }), { code: 'ERR_INVALID_SESSION' });
  assert.equal(calls, 2);
  assert.equal(wx.logins, 1);
  assert.equal(session.get(), null);
});

test('login: a busy server (503, Retry-After) is asked again only after the wait, whoever asks', async function () {
  let clock = 0;
  const wx = createFakeWx();
  const session = createSession(wx);
  const auth = createAuth({ wx: wx, config: CONFIG, session: session, now: function () { return clock; } });
  let asked = 0;
  wx.requestImpl = function () {
    asked++;
    return asked === 1
      ? { statusCode: 503, header: { 'Retry-After': '2' }, data: { [MAGIC]: 1, error: 'ERR_LOGIN_FAILED', message: 'too many logins at once' } }
      : okLogin(asked);
  };
  await assert.rejects(auth.ensure(), function (e) { return e.code === 'ERR_LOGIN_FAILED'; });
  clock += 1000;
  await assert.rejects(auth.ensure()); // the app, the page and the socket all ask: nobody goes to the server
  await assert.rejects(auth.login());
  assert.equal(asked, 1);
  clock += 1001;
  const s = await auth.ensure();
  assert.equal(s.id, 'id2');
  assert.equal(asked, 2);
});
