'use strict';
// End to end: recall, reactions, typing, @mentions and unread counts
// (protocol.md §8) through the mini-program's own utils/ modules, run in Node
// through test/wx-node.js, against the real Go server.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { createClient } = require('../utils/client');
const { createChatRoom } = require('../utils/chat');
const { createWxNode } = require('./wx-node');
const { createManualTimers } = require('./fake-wx');
const { goMissing, buildServer, startServer, waitFor } = require('./server');

const ROOM = 'mp-extras';
const RECALL_WINDOW_S = 4; // the server's window, short enough to pass in a test

describe('integration: recall, reactions, typing, mentions and unread against the Go server', { skip: goMissing(), timeout: 900000 }, function () {
  let tmp;
  let srv;
  let host;
  const chats = [];

  before(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pandachat-mpx-'));
    srv = await startServer(buildServer(tmp), [
      'serve',
      '--addr', '127.0.0.1:0',
      '--data', path.join(tmp, 'data'),
      '--dev-login=true',
      '--rate-limit', 'off',
      '--recall-window', RECALL_WINDOW_S + 's'
    ]);
    host = new URL(srv.url).host;
  });

  after(async function () {
    chats.forEach(function (c) { c.chat.stop(); });
    if (srv && srv.child.exitCode === null && srv.child.signalCode === null) {
      srv.child.kill('SIGKILL');
      await srv.exited;
    }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  // a user signed in with dev login (no WeChat here)
  async function user(nick) {
    const res = await fetch(srv.url + '/login/dev', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ nickName: nick }) });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    const wx = createWxNode({ code: function () { throw new Error('no WeChat login in this test'); } });
    const client = createClient({ wx: wx, config: { host: host, secure: false, room: ROOM } });
    client.session.set(body.session, body.userInfo);
    assert.equal(typeof body.userInfo.uid, 'string');
    return client;
  }

  function chatFor(client, opts) {
    const c = { client: client, wx: client.wx, raw: [] };
    c.chat = createChatRoom(Object.assign({
      client: client,
      room: ROOM,
      me: client.session.get().userInfo,
      presence: true,
      onChange: function (reason, info) { if (reason === 'frame') c.raw.push(info.frame); }
    }, opts || {}));
    c.list = c.chat.list;
    chats.push(c);
    return c;
  }

  function item(c, content) {
    return c.list.view().find(function (v) { return v.content === content; });
  }
  function idOf(c, content) {
    const m = c.list.messages.find(function (x) { return x.content === content; });
    return m ? m.id : 0;
  }

  let A;
  let B;
  const recalledIds = [];
  let a;
  let b;
  let bTimers;

  it('two users in the room on v=2 sockets', async function () {
    A = await user('Alice');
    B = await user('Bob');
    a = chatFor(A);
    await a.chat.start();
    bTimers = createManualTimers();
    b = chatFor(B, { timers: bTimers });
    await b.chat.start();
    await waitFor(function () { return a.chat.socket.joined && b.chat.socket.joined; }, 'both in the room');
    assert.equal(new URL(a.chat.socket.url).searchParams.get('v'), '2');
    a.chat.send('react to me');
    b.chat.send('hi Alice');
    await waitFor(function () { return idOf(a, 'hi Alice') && idOf(b, 'react to me') && !a.list.pending.length && !b.list.pending.length; }, 'the messages on both sides');
  });

  it('typing: "Alice is typing…" at Bob, at most one frame per 3 s, gone when her message comes', async function () {
    assert.equal(a.chat.typing('h'), true);
    assert.equal(a.chat.typing('he'), false, 'within 3 s');
    await waitFor(function () { return b.list.typingLabel() === 'Alice is typing…'; }, 'typing at B');
    assert.equal(a.list.typingLabel(), '', 'not one\'s own');
    const typing = b.raw.filter(function (f) { return f.type === 'typing'; });
    assert.equal(typing.length, 1);
    assert.equal(typing[0].nickName, 'Alice');
    assert.equal(typing[0].id, undefined, 'typing takes no id');
    a.chat.send('done typing');
    await waitFor(function () { return idOf(b, 'done typing') && b.list.typingLabel() === ''; }, 'the message ends it');
  });

  it('reactions: counts and the user\'s own, toggled off again, on both sides', async function () {
    const id = idOf(b, 'react to me');
    assert.equal(b.chat.react(id, '👍'), true);
    await waitFor(function () { return item(a, 'react to me').reactions && item(b, 'react to me').reactions; }, 'the reaction on both sides');
    assert.deepEqual(item(b, 'react to me').reactions, [{ emoji: '👍', count: 1, mine: true }]);
    assert.deepEqual(item(a, 'react to me').reactions, [{ emoji: '👍', count: 1, mine: false }]);
    const ev = a.raw.find(function (f) { return f.type === 'reaction'; });
    assert.equal(ev.target, id);
    assert.equal(ev.on, true);
    assert.equal(ev.uid, B.session.get().userInfo.uid);
    assert.ok(ev.id > id, 'an id of the room\'s sequence');
    a.chat.react(id, '👍');
    await waitFor(function () { return item(b, 'react to me').reactions[0].count === 2; }, 'two');
    b.chat.react(id, '👍');
    await waitFor(function () { return item(a, 'react to me').reactions[0].count === 1 && item(b, 'react to me').reactions[0].mine === false; }, 'Bob\'s taken back');
    assert.deepEqual(item(a, 'react to me').reactions, [{ emoji: '👍', count: 1, mine: true }]);
  });

  it('mentions: sent with the text, highlighted for the mentioned user', async function () {
    const bob = B.session.get().userInfo;
    a.chat.send('@' + bob.nickName + ' look', [bob.uid]);
    await waitFor(function () { return item(b, '@Bob look'); }, 'the mention at Bob');
    const v = item(b, '@Bob look');
    assert.equal(v.mentioned, true);
    assert.deepEqual(v.spans[0], { text: '@Bob', at: true, me: true });
    const mine = item(a, '@Bob look');
    assert.equal(mine.mentioned, undefined);
    assert.deepEqual(mine.spans[0], { text: '@Bob', at: true, me: false });
    assert.deepEqual(b.raw.find(function (f) { return f.content === '@Bob look'; }).mentions, [bob.uid]);
  });

  it('recall: one\'s own message within the window, shown in place on both sides; others\' and late ones refused', async function () {
    a.chat.send('oops');
    await waitFor(function () { return idOf(b, 'oops') && !a.list.pending.length; }, 'oops at Bob');
    const id = idOf(a, 'oops');
    assert.ok(a.chat.recallLeft(id) > 0);
    assert.equal(b.chat.recallLeft(id), 0, 'not Bob\'s');
    assert.equal(a.chat.recall(id), true);
    recalledIds.push(id);
    await waitFor(function () { return b.list.view().some(function (v) { return v.id === id && v.recalled; }); }, 'recalled at Bob');
    assert.equal(b.list.view().find(function (v) { return v.id === id; }).recallText, 'Alice recalled a message');
    assert.equal(a.list.view().find(function (v) { return v.id === id; }).recallText, 'You recalled a message');
    assert.equal(a.chat.recallLeft(id), 0);
    // Bob cannot recall Alice's message
    b.chat.recall(idOf(b, 'react to me'));
    await waitFor(function () { return b.raw.some(function (f) { return f.error === 'ERR_NOT_ALLOWED'; }); }, 'refused');
    assert.match(b.list.notice, /own messages/);
    assert.equal(item(a, 'react to me').recalled, undefined);
    // past the window
    a.chat.send('too old');
    await waitFor(function () { return idOf(a, 'too old') && !a.list.pending.length; }, 'sent');
    await new Promise(function (r) { setTimeout(r, RECALL_WINDOW_S * 1000 + 300); });
    a.chat.recall(idOf(a, 'too old'));
    await waitFor(function () { return a.raw.some(function (f) { return f.error === 'ERR_NOT_ALLOWED'; }); }, 'refused after the window');
    assert.ok(item(b, 'too old'), 'still there');
  });

  it('replay with since across a recall and a reaction', async function () {
    const since = b.chat.socket.lastId;
    const rawBefore = b.raw.length;
    b.wx.sockets[b.wx.sockets.length - 1].close({ code: 1000, reason: 'network gone' });
    await waitFor(function () { return b.chat.state === 'reconnecting'; }, 'B away');
    a.chat.react(idOf(a, 'hi Alice'), '🎉');
    a.chat.send('while Bob was away');
    await waitFor(function () { return idOf(a, 'while Bob was away') && !a.list.pending.length; }, 'sent');
    const away = idOf(a, 'while Bob was away');
    a.chat.recall(away);
    recalledIds.push(away);
    await waitFor(function () { return a.list.view().some(function (v) { return v.id === away && v.recalled; }); }, 'recalled at A');
    bTimers.flush();
    await waitFor(function () { return b.chat.state === 'open' && b.list.view().some(function (v) { return v.id === away && v.recalled; }); }, 'B back with the recall');
    assert.equal(b.list.view().find(function (v) { return v.id === away; }).recallText, 'Alice recalled a message');
    assert.equal(new URL(b.chat.socket.url).searchParams.get('since'), String(since));
    const replayed = b.raw.slice(rawBefore);
    assert.ok(replayed.some(function (f) { return f.type === 'reaction' && f.emoji === '🎉'; }), 'the reaction replayed');
    assert.ok(replayed.some(function (f) { return f.type === 'recall'; }), 'the recall replayed');
    assert.ok(!replayed.some(function (f) { return f.content === 'while Bob was away'; }), 'the recalled text is not replayed');
    await waitFor(function () { return item(b, 'hi Alice').reactions; }, 'the reaction at B');
    assert.deepEqual(item(b, 'hi Alice').reactions, [{ emoji: '🎉', count: 1, mine: false }]);
    assert.deepEqual(b.list.gaps, [], 'event ids open no hole');
  });

  it('/history: recalled messages without content, reactions aggregated, the user\'s own marked; since after the page', async function () {
    const c = chatFor(A);
    await c.chat.start();
    await waitFor(function () { return c.chat.socket.joined; }, 'in the room');
    const v = c.list.view();
    const recalled = v.filter(function (x) { return x.recalled; });
    assert.deepEqual(recalled.map(function (x) { return x.id; }), recalledIds);
    recalled.forEach(function (x) { assert.equal(x.content, undefined); assert.equal(x.recallText, 'You recalled a message'); });
    assert.deepEqual(item(c, 'react to me').reactions, [{ emoji: '👍', count: 1, mine: true }]);
    assert.deepEqual(item(c, 'hi Alice').reactions, [{ emoji: '🎉', count: 1, mine: true }]);
    assert.equal(item(c, '@Bob look').spans[0].text, '@Bob');
    assert.ok(c.chat.socket.lastId >= a.chat.socket.lastId, 'since covers the events before the page');
    c.chat.stop();
  });

  it('unread: GET /rooms counts what came after the user left; reading moves readId', async function () {
    const rawBefore = a.raw.length;
    b.chat.stop();
    // the room has let Bob go (else what it sends is delivered to him, read)
    const bob = B.session.get().userInfo.uid;
    await waitFor(function () { return a.raw.slice(rawBefore).some(function (f) { return f.type === 'presence' && f.event === 'leave' && f.uid === bob; }); }, 'Bob gone');
    a.chat.send('unread 1');
    a.chat.send('unread 2');
    await waitFor(function () { return idOf(a, 'unread 2') && !a.list.pending.length; }, 'sent');
    const rooms = await B.api.rooms();
    const r = rooms.find(function (x) { return x.room === ROOM; });
    assert.ok(r, JSON.stringify(rooms));
    assert.equal(r.unread, 2, JSON.stringify(r));
    const c = chatFor(B);
    await c.chat.start();
    await waitFor(function () { return c.chat.socket.joined; }, 'back in the room');
    c.chat.read();
    await waitFor(function () { return B.unread.count(ROOM) === 0; }, 'read here');
    let after;
    for (let i = 0; ; i++) {
      after = (await B.api.rooms()).find(function (x) { return x.room === ROOM; });
      if (after.readId >= after.lastId) break;
      assert.ok(i < 100, 'read on the server: ' + JSON.stringify(after));
      await new Promise(function (r) { setTimeout(r, 50); });
    }
    assert.equal(after.unread, 0);
    c.chat.stop();
  });
});
