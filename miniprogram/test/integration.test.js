'use strict';
// End to end: the mini-program's own utils/ modules, run in Node through
// test/wx-node.js, against the real Go server (built from this repository)
// and a fake WeChat API that knows the login codes handed out here.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const { createClient } = require('../utils/client');
const { createWxNode } = require('./wx-node');
const { createManualTimers } = require('./fake-wx');

const REPO = path.resolve(__dirname, '../..');
const ROOM = 'panda-it';
const APPID = 'wxtest';
const SECRET = 's3cret';
// a valid 1x1 RGBA PNG
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');

// PANDACHAT_BIN: run this already built server binary instead of building one.
const PREBUILT = process.env.PANDACHAT_BIN || '';

function goMissing() {
  if (PREBUILT) return false;
  const r = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (r.error) return 'the Go toolchain (`go`) is not on PATH, so the server cannot be built';
  return false;
}

// Fake WeChat: GET /sns/jscode2session answers for codes issued by issue(openid), once each.
function startFakeWeChat() {
  const codes = new Map();
  const calls = [];
  let n = 0;
  const server = http.createServer(function (req, res) {
    const u = new URL(req.url, 'http://127.0.0.1');
    const q = Object.fromEntries(u.searchParams);
    calls.push(q);
    res.setHeader('Content-Type', 'application/json');
    if (req.method !== 'GET' || u.pathname !== '/sns/jscode2session') {
      res.statusCode = 404;
      res.end(JSON.stringify({ errcode: -1, errmsg: 'not found' }));
      return;
    }
    const ok = q.appid === APPID && q.secret === SECRET && q.grant_type === 'authorization_code' && codes.has(q.js_code);
    if (!ok) {
      res.end(JSON.stringify({ errcode: 40029, errmsg: 'invalid code' }));
      return;
    }
    const openid = codes.get(q.js_code);
    codes.delete(q.js_code);
    res.end(JSON.stringify({ openid: openid, session_key: crypto.createHash('md5').update(openid).digest('base64') }));
  });
  return new Promise(function (resolve) {
    server.listen(0, '127.0.0.1', function () {
      resolve({
        server: server,
        calls: calls,
        url: 'http://127.0.0.1:' + server.address().port,
        issue: function (openid) {
          const code = 'code-' + (++n) + '-' + crypto.randomBytes(4).toString('hex');
          codes.set(code, openid);
          return code;
        }
      });
    });
  });
}

function startServer(bin, args) {
  return new Promise(function (resolve, reject) {
    const child = spawn(bin, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    let done = false;
    const exited = new Promise(function (r) {
      child.on('exit', function (code, signal) { r({ code: code, signal: signal }); });
    });
    const onData = function (chunk) {
      log += chunk.toString('utf8');
      const m = /listening on (http:\/\/\S+)/.exec(log);
      if (m && !done) {
        done = true;
        resolve({ child: child, url: m[1].replace(/["'`.,;)\]}]+$/, ''), exited: exited, log: function () { return log; } });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', function (e) { if (!done) { done = true; reject(e); } });
    exited.then(function (r) {
      if (!done) {
        done = true;
        reject(new Error('server exited (' + JSON.stringify(r) + ') before "listening on http://…":\n' + log));
      }
    });
    setTimeout(function () {
      if (!done) {
        done = true;
        child.kill('SIGKILL');
        reject(new Error('no "listening on http://…" line from the server within 60 s:\n' + log));
      }
    }, 60000).unref();
  });
}

async function waitFor(fn, label, ms) {
  const limit = Date.now() + (ms || 15000);
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > limit) throw new Error('gave up waiting for: ' + label);
    await new Promise(function (r) { setTimeout(r, 20); });
  }
}

const skip = goMissing();

describe('integration: mini-program modules against the Go server', { skip: skip, timeout: 900000 }, function () {
  let tmp;
  let fake;
  let srv;
  let host;
  const sockets = [];

  before(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pandachat-mp-'));
    fake = await startFakeWeChat();
    const bin = PREBUILT ? path.resolve(PREBUILT) : path.join(tmp, process.platform === 'win32' ? 'pandachat.exe' : 'pandachat');
    const build = PREBUILT ? { status: 0 } : spawnSync('go', ['build', '-o', bin, './cmd/pandachat'], { cwd: REPO, encoding: 'utf8', timeout: 600000 });
    if (build.status !== 0) {
      throw new Error('go build ./cmd/pandachat failed:\n' + (build.stderr || '') + (build.stdout || '') + (build.error ? String(build.error) : ''));
    }
    srv = await startServer(bin, [
      'serve',
      '--addr', '127.0.0.1:0',
      '--data', path.join(tmp, 'data'),
      '--wx-appid', APPID,
      '--wx-secret', SECRET,
      '--wx-api', fake.url,
      '--dev-login=false',
      '--rate-limit', 'off'
    ]);
    host = new URL(srv.url).host;
  });

  after(async function () {
    sockets.forEach(function (s) { s.sock.stop(); });
    if (srv && srv.child.exitCode === null && srv.child.signalCode === null) {
      srv.child.kill('SIGKILL');
      await srv.exited;
    }
    if (fake) await new Promise(function (r) { fake.server.close(r); });
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  // one mini-program user: its own storage, its own WeChat identity
  function makeUser(openid) {
    let logins = 0;
    const wx = createWxNode({ code: function () { logins++; return fake.issue(openid); } });
    const client = createClient({ wx: wx, config: { host: host, secure: false, room: ROOM } });
    client.logins = function () { return logins; };
    return client;
  }

  function connect(client, timers) {
    const me = client.session.get() && client.session.get().userInfo;
    const c = { client: client, wx: client.wx, raw: [], states: [], list: client.messages({ me: me }) };
    c.sock = client.socket({
      room: ROOM,
      timers: timers,
      onFrame: function (f) { c.raw.push(f); c.list.applyFrame(f); },
      onState: function (s, info) { c.states.push({ state: s, info: info }); }
    });
    sockets.push(c);
    c.sock.start();
    return c;
  }

  function byContent(c, content) {
    return c.list.messages.find(function (m) { return m.content === content; });
  }

  let A;
  let B;
  let media;
  let a;
  let b;
  let bTimers;

  it('refuses a code that WeChat does not know (ERR_LOGIN_FAILED)', async function () {
    const wx = createWxNode({ code: function () { return 'unknown-code'; } });
    const client = createClient({ wx: wx, config: { host: host, secure: false } });
    await assert.rejects(client.auth.login(), function (e) {
      assert.equal(e.code, 'ERR_LOGIN_FAILED');
      assert.equal(e.status, 401);
      return true;
    });
    assert.equal(client.session.get(), null);
  });

  it('logs in two users with wx.login codes', async function () {
    A = makeUser('openid-alice');
    B = makeUser('openid-bob');
    const sa = await A.auth.login();
    const sb = await B.auth.login();
    assert.match(sa.id, /^[0-9a-f]{64}$/);
    assert.match(sa.skey, /^[0-9a-f]{40}$/);
    assert.notEqual(sa.id, sb.id);
    assert.ok(sa.userInfo && typeof sa.userInfo === 'object');
    assert.ok(!JSON.stringify(sa.userInfo).includes('openid-alice'), 'the public profile must not carry the openId');
    const q = fake.calls[fake.calls.length - 1];
    assert.equal(q.appid, APPID);
    assert.equal(q.secret, SECRET);
    assert.equal(q.grant_type, 'authorization_code');
    assert.equal(await A.auth.check(), true);
  });

  it('uploads an avatar and sets the profile', async function () {
    const file = path.join(tmp, 'avatar.png');
    fs.writeFileSync(file, PNG);
    media = await A.api.upload(file);
    assert.equal(media.mime, 'image/png');
    assert.equal(media.size, PNG.length);
    assert.equal(media.width, 1);
    assert.equal(media.height, 1);
    assert.match(media.url, /^https?:\/\//, 'media URLs are absolute');
    assert.equal(new URL(media.url).host, host);
    const got = await fetch(media.url);
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('content-type'), 'image/png');
    assert.deepEqual(Buffer.from(await got.arrayBuffer()), PNG);

    await A.api.setProfile({ nickName: 'Alice', avatarUrl: media.url });
    const me = await A.api.me();
    assert.equal(me.nickName, 'Alice');
    assert.equal(me.avatarUrl, media.url);
    assert.equal(A.session.get().userInfo.nickName, 'Alice');
  });

  it('connects both users to the room', async function () {
    a = connect(A);
    await waitFor(function () { return a.sock.state === 'open' && a.list.online >= 1; }, 'A open + system frame');
    bTimers = createManualTimers();
    b = connect(B, bTimers);
    await waitFor(function () { return b.sock.state === 'open' && b.raw.length > 0; }, 'B open + system frame');
    assert.deepEqual(b.raw[0], { type: 'system', num: 2 });
    assert.equal(new URL(a.sock.url).searchParams.get('room'), ROOM);
  });

  it('chats both ways: own messages are "user", others "remote" with the new nickname', async function () {
    const p = a.list.addPending({ text: 'hello from Alice' });
    assert.equal(a.sock.send(p.frame), true);
    await waitFor(function () { return byContent(a, 'hello from Alice') && byContent(b, 'hello from Alice'); }, 'A\'s message on both sides');
    const mine = a.raw.find(function (f) { return f.content === 'hello from Alice'; });
    assert.equal(mine.type, 'user');
    assert.equal(mine.cid, p.cid);
    assert.equal(mine.nickName, 'Alice');
    assert.equal(a.list.pending.length, 0);
    assert.equal(byContent(a, 'hello from Alice').own, true);
    const theirs = b.raw.find(function (f) { return f.content === 'hello from Alice'; });
    assert.equal(theirs.type, 'remote');
    assert.equal(theirs.nickName, 'Alice');
    assert.equal(theirs.avatarUrl, media.url);
    assert.equal(theirs.id, mine.id);
    assert.equal(theirs.cid, undefined, 'cid goes back to the sender only');
    assert.equal(byContent(b, 'hello from Alice').own, false);

    const q = b.list.addPending({ text: 'hi Alice, Bob here' });
    b.sock.send(q.frame);
    await waitFor(function () { return byContent(a, 'hi Alice, Bob here') && b.list.pending.length === 0; }, 'B\'s message at A');
    assert.equal(a.raw.find(function (f) { return f.content === 'hi Alice, Bob here'; }).type, 'remote');
    assert.equal(byContent(a, 'hi Alice, Bob here').own, false);
  });

  it('sends an image as a gallery message', async function () {
    const p = a.list.addPending({ url: media.url });
    a.sock.send(p.frame);
    await waitFor(function () {
      return b.raw.some(function (f) { return f.gallery === true; }) && a.list.pending.length === 0;
    }, 'gallery message at B');
    const g = b.raw.find(function (f) { return f.gallery === true; });
    assert.equal(g.type, 'remote');
    assert.equal(g.url, media.url);
    assert.equal(b.list.messages[b.list.messages.length - 1].gallery, true);
  });

  it('shows ERR_BAD_MESSAGE on the pending message and stays connected', async function () {
    const p = a.list.addPending({ text: '   ' });
    a.sock.send(p.frame);
    await waitFor(function () { return a.list.pending.length === 1 && a.list.pending[0].failed; }, 'error frame for the empty text');
    assert.equal(a.raw[a.raw.length - 1].error, 'ERR_BAD_MESSAGE');
    assert.equal(a.raw[a.raw.length - 1].cid, p.cid);
    a.list.removePending(p.cid);
    assert.equal(a.sock.state, 'open');
  });

  it('B drops its socket, A sends 3 messages, B reconnects with since and gets each once in id order', async function () {
    const seenBefore = b.sock.lastId;
    assert.equal(typeof seenBefore, 'number');
    const rawBefore = b.raw.length;
    b.wx.sockets[b.wx.sockets.length - 1].close({ code: 1000, reason: 'network gone' });
    await waitFor(function () { return b.sock.state === 'reconnecting'; }, 'B reconnecting');
    assert.equal(bTimers.size, 1);

    const texts = ['while away 1', 'while away 2', 'while away 3'];
    texts.forEach(function (t) { a.sock.send(a.list.addPending({ text: t }).frame); });
    await waitFor(function () { return texts.every(function (t) { return byContent(a, t); }) && a.list.pending.length === 0; }, 'A sees its 3 messages');
    const sentIds = texts.map(function (t) { return byContent(a, t).id; });
    assert.deepEqual(sentIds.slice().sort(function (x, y) { return x - y; }), sentIds);

    bTimers.flush();
    await waitFor(function () { return texts.every(function (t) { return byContent(b, t); }); }, 'B gets the missed messages');
    assert.equal(b.sock.state, 'open');
    assert.equal(new URL(b.sock.url).searchParams.get('since'), String(seenBefore));

    const after = b.raw.slice(rawBefore);
    assert.equal(after[0].type, 'system');
    const ids = after.filter(function (f) { return typeof f.id === 'number'; }).map(function (f) { return f.id; });
    assert.deepEqual(ids, sentIds, 'replay: exactly the missed messages, in id order');
    const allIds = b.raw.filter(function (f) { return typeof f.id === 'number'; }).map(function (f) { return f.id; });
    assert.equal(new Set(allIds).size, allIds.length, 'no message twice');
    assert.deepEqual(b.list.messages.map(function (m) { return m.id; }), a.list.messages.map(function (m) { return m.id; }));
    texts.forEach(function (t) {
      assert.equal(b.list.messages.filter(function (m) { return m.content === t; }).length, 1);
    });
  });

  it('pages back through /history', async function () {
    const last = a.list.lastId;
    const page = await A.api.history({ room: ROOM, before: last + 1, limit: 3 });
    assert.deepEqual(page.map(function (m) { return m.id; }), [last - 2, last - 1, last]);
    assert.deepEqual(page.map(function (m) { return m.content; }), ['while away 1', 'while away 2', 'while away 3']);
    const older = await A.api.history({ room: ROOM, before: last - 2, limit: 2 });
    assert.deepEqual(older.map(function (m) { return m.id; }), [last - 4, last - 3]);
    assert.equal(older[1].gallery, true);
    // a list built from history alone tells A's messages (own) from B's (id last-4)
    const fromHistory = A.messages({ me: A.session.get().userInfo });
    fromHistory.addHistory(page.concat(older));
    assert.deepEqual(fromHistory.view().map(function (m) { return m.own; }), [false, true, true, true, true]);
  });

  it('a stale stored session is replaced by a new login on connect', async function () {
    const C = makeUser('openid-carol');
    C.session.set({ id: 'ab'.repeat(32), skey: '00'.repeat(20) }, null);
    const c = connect(C);
    await waitFor(function () { return c.sock.state === 'open' && c.raw.some(function (f) { return f.type === 'system'; }); }, 'C relogged in and open');
    assert.equal(C.logins(), 1);
    assert.notEqual(C.session.get().skey, '00'.repeat(20));
    c.sock.stop();
  });

  it('SIGTERM: the server sends 1001 and exits 0', async function () {
    srv.child.kill('SIGTERM');
    const res = await srv.exited;
    assert.deepEqual(res, { code: 0, signal: null }, srv.log());
    await waitFor(function () { return a.states.some(function (s) { return s.info && s.info.code === 1001; }); }, 'A sees close 1001');
    a.sock.stop();
    b.sock.stop();
  });
});
