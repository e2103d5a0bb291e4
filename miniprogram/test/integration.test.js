'use strict';
// End to end: the mini-program's own utils/ modules, run in Node through
// test/wx-node.js, against the real Go server (built from this repository)
// and a fake WeChat API that knows the login codes handed out here.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const { createClient } = require('../utils/client');
const { createChatRoom } = require('../utils/chat');
const { createWxNode } = require('./wx-node');
const { createManualTimers } = require('./fake-wx');
const { goMissing, buildServer, startServer, waitFor } = require('./server');

const ROOM = 'panda-it';
// a small replay limit, so that a reconnect after a few missed messages has a hole to fill
const REPLAY_LIMIT = 5;
const APPID = 'wxtest';
const SECRET = 's3cret';
// a valid 1x1 RGBA PNG
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');

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

const skip = goMissing();

describe('integration: mini-program modules against the Go server', { skip: skip, timeout: 900000 }, function () {
  let tmp;
  let fake;
  let srv;
  let host;
  const chats = [];

  before(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pandachat-mp-'));
    fake = await startFakeWeChat();
    const bin = buildServer(tmp);
    srv = await startServer(bin, [
      'serve',
      '--addr', '127.0.0.1:0',
      '--data', path.join(tmp, 'data'),
      '--wx-appid', APPID,
      '--wx-secret', SECRET,
      '--wx-api', fake.url,
      '--dev-login=false',
      '--rate-limit', 'off',
      '--replay-limit', String(REPLAY_LIMIT)
    ]);
    host = new URL(srv.url).host;
  });

  after(async function () {
    chats.forEach(function (c) { c.chat.stop(); });
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

  // one chat (utils/chat.js) for a user; raw: every frame it got
  function chatFor(client, opts) {
    const me = client.session.get() && client.session.get().userInfo;
    const c = { client: client, wx: client.wx, raw: [], states: [], reasons: [] };
    c.chat = createChatRoom(Object.assign({
      client: client,
      room: ROOM,
      me: me,
      onChange: function (reason, info) {
        c.reasons.push(reason);
        if (reason === 'frame') c.raw.push(info.frame);
        if (reason === 'state') c.states.push({ state: info.state, info: info.info });
      }
    }, opts || {}));
    c.list = c.chat.list;
    chats.push(c);
    return c;
  }

  function byContent(c, content) {
    return c.list.messages.find(function (m) { return m.content === content; });
  }

  function countContent(list, content) {
    return list.filter(function (m) { return m.content === content; }).length;
  }

  // every message of the room, by GET /history
  async function allHistory(client) {
    let out = [];
    let before;
    for (;;) {
      const page = await client.api.history({ room: ROOM, before: before, limit: 100 });
      out = page.concat(out);
      if (page.length < 100) return out;
      before = page[0].id;
    }
  }

  function contiguous(ids) {
    for (let i = 1; i < ids.length; i++) if (ids[i] !== ids[i - 1] + 1) return false;
    return true;
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

  it('connects both users to the room, the session in headers only', async function () {
    a = chatFor(A);
    await a.chat.start();
    await waitFor(function () { return a.chat.socket.joined && a.list.online >= 1; }, 'A in the room');
    bTimers = createManualTimers();
    b = chatFor(B, { timers: bTimers });
    await b.chat.start();
    await waitFor(function () { return b.chat.socket.joined && b.raw.length > 0; }, 'B in the room');
    assert.deepEqual(b.raw[0], { type: 'system', num: 2 });
    const q = new URL(a.chat.socket.url).searchParams;
    assert.equal(q.get('room'), ROOM);
    assert.deepEqual(Array.from(q.keys()).sort(), ['room', 'since', 'v'], 'no session in the URL');
    assert.equal(q.get('v'), '2', 'opted in to recall, reactions, typing, mentions');
    assert.ok(!a.chat.socket.url.includes(A.session.get().skey));
  });

  it('chats both ways: own messages are "user", others "remote" with the new nickname', async function () {
    const cid = a.chat.send('hello from Alice');
    await waitFor(function () { return byContent(a, 'hello from Alice') && byContent(b, 'hello from Alice'); }, 'A\'s message on both sides');
    const mine = a.raw.find(function (f) { return f.content === 'hello from Alice'; });
    assert.equal(mine.type, 'user');
    assert.equal(mine.cid, cid);
    assert.equal(mine.nickName, 'Alice');
    assert.equal(typeof mine.time, 'number');
    assert.equal(a.list.pending.length, 0);
    assert.equal(byContent(a, 'hello from Alice').own, true);
    const theirs = b.raw.find(function (f) { return f.content === 'hello from Alice'; });
    assert.equal(theirs.type, 'remote');
    assert.equal(theirs.nickName, 'Alice');
    assert.equal(theirs.avatarUrl, media.url);
    assert.equal(theirs.id, mine.id);
    assert.equal(theirs.cid, undefined, 'cid goes back to the sender only');
    assert.equal(byContent(b, 'hello from Alice').own, false);
    assert.ok(b.list.view().find(function (v) { return v.content === 'hello from Alice'; }).timeLabel, 'a time separator from `time`');

    b.chat.send('hi Alice, Bob here');
    await waitFor(function () { return byContent(a, 'hi Alice, Bob here') && b.list.pending.length === 0; }, 'B\'s message at A');
    assert.equal(a.raw.find(function (f) { return f.content === 'hi Alice, Bob here'; }).type, 'remote');
    assert.equal(byContent(a, 'hi Alice, Bob here').own, false);
  });

  it('sends an image: uploaded with progress, then a gallery message', async function () {
    const file = path.join(tmp, 'photo.png');
    fs.writeFileSync(file, PNG);
    const cid = a.chat.sendImage(file);
    assert.equal(a.list.view().find(function (v) { return v.cid === cid; }).uploading, true, 'shown at once');
    await waitFor(function () {
      return b.raw.some(function (f) { return f.gallery === true; }) && a.list.pending.length === 0;
    }, 'gallery message at B');
    assert.ok(a.reasons.indexOf('progress') >= 0, 'upload progress reported');
    assert.ok(a.reasons.indexOf('progress') < a.reasons.indexOf('uploaded'));
    const g = b.raw.find(function (f) { return f.gallery === true; });
    assert.equal(g.type, 'remote');
    assert.equal(g.url, media.url, 'the same bytes are the same media');
    assert.equal(b.list.messages[b.list.messages.length - 1].gallery, true);
  });

  it('shows ERR_BAD_MESSAGE on the pending message, which can be deleted; the socket stays open', async function () {
    const cid = a.chat.send('   ');
    await waitFor(function () { return a.list.pending.length === 1 && a.list.pending[0].state === 'failed'; }, 'error frame for the empty text');
    assert.equal(a.raw[a.raw.length - 1].error, 'ERR_BAD_MESSAGE');
    assert.equal(a.raw[a.raw.length - 1].cid, cid);
    assert.ok(a.chat.remove(cid));
    assert.equal(a.list.pending.length, 0);
    assert.equal(a.chat.state, 'open');
  });

  it('B drops its socket, A sends 3 messages, B reconnects with since and gets each once in id order', async function () {
    const seenBefore = b.chat.socket.lastId;
    assert.equal(typeof seenBefore, 'number');
    const rawBefore = b.raw.length;
    b.wx.sockets[b.wx.sockets.length - 1].close({ code: 1000, reason: 'network gone' });
    await waitFor(function () { return b.chat.state === 'reconnecting'; }, 'B reconnecting');
    assert.equal(bTimers.size, 1);

    const texts = ['while away 1', 'while away 2', 'while away 3'];
    texts.forEach(function (t) { a.chat.send(t); });
    await waitFor(function () { return texts.every(function (t) { return byContent(a, t); }) && a.list.pending.length === 0; }, 'A sees its 3 messages');
    const sentIds = texts.map(function (t) { return byContent(a, t).id; });
    assert.deepEqual(sentIds.slice().sort(function (x, y) { return x - y; }), sentIds);

    bTimers.flush();
    await waitFor(function () { return texts.every(function (t) { return byContent(b, t); }); }, 'B gets the missed messages');
    assert.equal(b.chat.state, 'open');
    assert.equal(new URL(b.chat.socket.url).searchParams.get('since'), String(seenBefore));

    const after = b.raw.slice(rawBefore);
    assert.equal(after[0].type, 'system');
    const ids = after.filter(function (f) { return typeof f.id === 'number'; }).map(function (f) { return f.id; });
    assert.deepEqual(ids, sentIds, 'replay: exactly the missed messages, in id order');
    assert.deepEqual(b.list.messages.map(function (m) { return m.id; }), a.list.messages.map(function (m) { return m.id; }));
    texts.forEach(function (t) { assert.equal(countContent(b.list.messages, t), 1); });
  });

  it('a replay above since+1 (more missed than the replay limit): the hole is paged from /history', async function () {
    const seenBefore = b.chat.socket.lastId;
    const rawBefore = b.raw.length;
    b.wx.sockets[b.wx.sockets.length - 1].close({ code: 1000, reason: 'network gone' });
    await waitFor(function () { return b.chat.state === 'reconnecting'; }, 'B reconnecting');
    const texts = [];
    for (let i = 1; i <= 12; i++) texts.push('missed ' + i);
    texts.forEach(function (t) { a.chat.send(t); });
    await waitFor(function () { return texts.every(function (t) { return byContent(a, t); }) && a.list.pending.length === 0; }, 'A sees its 12 messages');
    bTimers.flush();
    await waitFor(function () { return texts.every(function (t) { return byContent(b, t); }) && !b.chat.busy; }, 'B has all 12');
    const replayed = b.raw.slice(rawBefore).filter(function (f) { return typeof f.id === 'number'; }).map(function (f) { return f.id; });
    assert.equal(replayed.length, REPLAY_LIMIT, 'the server replays the newest ' + REPLAY_LIMIT + ' only');
    assert.ok(replayed[0] > seenBefore + 1, 'a hole: first replayed ' + replayed[0] + ' after since=' + seenBefore);
    const ids = b.list.messages.map(function (m) { return m.id; });
    assert.ok(contiguous(ids), 'no hole left: ' + ids.join(','));
    assert.deepEqual(b.list.gaps, []);
    assert.deepEqual(ids, a.list.messages.map(function (m) { return m.id; }));
    texts.forEach(function (t) { assert.equal(countContent(b.list.messages, t), 1); });
  });

  it('the socket drops between send and echo: every message is re-sent with its cid and stored exactly once', async function () {
    const aTimers = createManualTimers();
    const c = chatFor(A, { timers: aTimers });
    await c.chat.start();
    await waitFor(function () { return c.chat.socket.joined; }, 'A\'s second chat in the room');
    // from now on this socket hears nothing: echoes are lost on the way back
    const task = c.wx.sockets[c.wx.sockets.length - 1];
    task.ws.removeAllListeners('message');
    const texts = ['mid-send 1', 'mid-send 2', 'mid-send 3'];
    texts.forEach(function (t) { c.chat.send(t); });
    // the server stored them; the client does not know
    await waitFor(function () {
      return b.list.messages.filter(function (m) { return texts.indexOf(m.content) >= 0; }).length === 3;
    }, 'the three stored (seen by B)');
    assert.equal(c.list.pending.length, 3);
    assert.ok(c.list.pending.every(function (p) { return p.state === 'sent' && p.attempts === 1; }));
    // one more handed to the socket as it dies (stored or not), one while it is down
    c.chat.send('mid-send 4');
    task.ws.terminate();
    await waitFor(function () { return c.chat.state === 'reconnecting'; }, 'reconnecting');
    c.chat.send('mid-send 5');
    aTimers.flush();
    await waitFor(function () { return c.chat.state === 'open' && c.list.pending.length === 0; }, 'every message confirmed after the reconnect');
    const all = texts.concat(['mid-send 4', 'mid-send 5']);
    all.forEach(function (t) { assert.equal(countContent(c.list.messages, t), 1, t + ' once in the list'); });
    const echoes = c.raw.filter(function (f) { return f.type === 'user' && typeof f.cid === 'string' && all.indexOf(f.content) >= 0; });
    assert.deepEqual(echoes.map(function (f) { return f.content; }).sort(), all.slice().sort(), 'an echo with the cid for each');
    // GET /history: each message stored exactly once
    const stored = await allHistory(B);
    all.forEach(function (t) { assert.equal(countContent(stored, t), 1, t + ' stored once'); });
    assert.ok(contiguous(stored.map(function (m) { return m.id; })));
    await waitFor(function () { return all.every(function (t) { return byContent(b, t); }); }, 'B sees them');
    all.forEach(function (t) { assert.equal(countContent(b.list.messages, t), 1, t + ' once at B'); });
    c.chat.stop();
  });

  it('pages back through /history past the cap of held messages, and back to the latest', async function () {
    const stored = await allHistory(A);
    const last = stored[stored.length - 1].id;
    const page = await A.api.history({ room: ROOM, before: last + 1, limit: 3 });
    assert.deepEqual(page.map(function (m) { return m.id; }), [last - 2, last - 1, last]);
    const c = chatFor(A, { max: 8, pageSize: 4 });
    await c.chat.start();
    await waitFor(function () { return c.chat.socket.joined; }, 'in the room');
    assert.deepEqual(c.list.messages.map(function (m) { return m.id; }), [last - 3, last - 2, last - 1, last]);
    const befores = [];
    for (;;) {
      const r = await c.chat.loadOlder();
      if (!r) break;
      befores.push(r.before);
      const ids = c.list.messages.map(function (m) { return m.id; });
      assert.ok(ids.length <= 8 && contiguous(ids), ids.join(','));
    }
    assert.equal(befores[0], last - 3);
    for (let i = 1; i < befores.length; i++) assert.equal(befores[i], befores[i - 1] - 4, 'never the same page twice');
    assert.equal(c.list.firstId, 1);
    assert.equal(c.list.hasOlder, false);
    assert.equal(c.list.atLatest, false);
    assert.deepEqual(c.list.messages.map(function (m) { return m.content; }), stored.slice(0, 8).map(function (m) { return m.content; }));
    // a list built from history tells own messages from others'
    assert.deepEqual(c.list.view().map(function (v) { return v.own; }), stored.slice(0, 8).map(function (m) { return m.type === 'user'; }));
    await c.chat.jumpToLatest();
    assert.equal(c.list.lastId, last);
    assert.equal(c.list.atLatest, true);
    c.chat.stop();
  });

  it('a stale stored session is replaced by a new login on connect', async function () {
    const C = makeUser('openid-carol');
    C.session.set({ id: 'ab'.repeat(32), skey: '00'.repeat(20) }, null);
    const c = chatFor(C);
    c.client.api.history = function () { return Promise.resolve([]); }; // straight to the socket
    await c.chat.start();
    await waitFor(function () { return c.chat.state === 'open' && c.raw.some(function (f) { return f.type === 'system'; }); }, 'C relogged in and open');
    assert.equal(C.logins(), 1);
    assert.notEqual(C.session.get().skey, '00'.repeat(20));
    c.chat.stop();
  });

  it('SIGTERM: the server sends 1001 and exits 0', async function () {
    srv.child.kill('SIGTERM');
    const res = await srv.exited;
    assert.deepEqual(res, { code: 0, signal: null }, srv.log());
    await waitFor(function () { return a.states.some(function (s) { return s.info && s.info.code === 1001; }); }, 'A sees close 1001');
    a.chat.stop();
    b.chat.stop();
  });
});
