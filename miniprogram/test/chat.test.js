'use strict';
// utils/chat.js against the fake wx: re-sends after reconnects, bounded
// attempts, send failures, replay holes, older paging past the cap, uploads.
const test = require('node:test');
const assert = require('node:assert/strict');
const { createClient } = require('../utils/client');
const { createChatRoom } = require('../utils/chat');
const { createFakeWx, createManualTimers, settle, CONFIG } = require('./fake-wx');
const { createRoom } = require('./page-shim');

function setup(opts) {
  const wx = createFakeWx();
  const client = createClient({ wx: wx, config: CONFIG });
  client.session.set({ id: 'sid', skey: 'skey' }, { uid: 'u-me', nickName: 'Me' });
  const room = createRoom();
  const asked = [];
  wx.requestImpl = function (r) {
    const u = new URL(r.url);
    if (u.pathname === '/history') {
      const q = { before: Number(u.searchParams.get('before')) || 0, limit: Number(u.searchParams.get('limit')) || 50 };
      asked.push(q);
      return { statusCode: 200, data: room.history(q.before, q.limit), header: { 'X-Last-Id': String(room.messages.length) } };
    }
    return { statusCode: 404, data: '' };
  };
  const timers = createManualTimers();
  const changes = [];
  let n = 0;
  const chat = createChatRoom(Object.assign({
    client: client,
    me: { uid: 'u-me', nickName: 'Me' },
    timers: timers,
    random: function () { return 1; },
    newCid: function () { return 'c' + (++n); },
    onChange: function (reason, info) { changes.push([reason, info]); }
  }, opts || {}));
  return { wx, client, room, asked, timers, changes, chat };
}

function params(url) {
  return Object.fromEntries(new URL(url).searchParams);
}

// the server side of one socket: open, system frame
function join(t, num) {
  t.serverOpen();
  t.serverSend({ type: 'system', num: num || 1 });
}

// the server stores a sent frame and echoes it (type user, with the cid)
function store(room, t, sent) {
  const m = room.add({ uid: 'u-me', nickName: 'Me', content: sent.content });
  t.serverSend(Object.assign(room.frame(m, 'user'), { cid: sent.cid }));
  return m;
}

function ids(chat) {
  return chat.list.messages.map(function (m) { return m.id; });
}

test('chat: history first, then the socket with since; sends wait for the system frame', async function () {
  const { wx, room, chat } = setup();
  for (let i = 0; i < 3; i++) room.add();
  await chat.start();
  await settle();
  const t = wx.sockets[0];
  assert.equal(params(t.url).since, '3');
  assert.deepEqual(t.header, { 'X-WX-Id': 'sid', 'X-WX-Skey': 'skey' });
  assert.equal(params(t.url).skey, undefined, 'no session in the URL');
  chat.send('early');
  t.serverOpen();
  assert.deepEqual(t.sent, [], 'not in the room yet');
  t.serverSend({ type: 'system', num: 2 });
  assert.deepEqual(t.sent, [{ text: true, content: 'early', cid: 'c1' }]);
  store(room, t, t.sent[0]);
  assert.equal(chat.list.pending.length, 0);
  assert.deepEqual(ids(chat), [1, 2, 3, 4]);
  chat.stop();
});

test('chat: unconfirmed messages go again after a reconnect with the same cid; stored once', async function () {
  const { wx, room, chat, timers } = setup();
  await chat.start();
  await settle();
  const t1 = wx.sockets[0];
  join(t1);
  chat.send('a');
  chat.send('b');
  chat.send('c');
  assert.deepEqual(t1.sent.map(function (f) { return f.cid; }), ['c1', 'c2', 'c3']);
  // the server stored "a" and "b"; the socket drops before any echo arrives
  const a = room.add({ uid: 'u-me', content: 'a' });
  const b = room.add({ uid: 'u-me', content: 'b' });
  t1.serverClose(1006);
  assert.equal(chat.state, 'reconnecting');
  chat.send('d'); // while away: queued
  timers.flush();
  await settle();
  const t2 = wx.sockets[1];
  assert.equal(params(t2.url).since, '0');
  t2.serverOpen();
  t2.serverSend({ type: 'system', num: 1 });
  // replay of what was stored (no cid), then the re-sends
  t2.serverSend(room.frame(a, 'user'));
  t2.serverSend(room.frame(b, 'user'));
  assert.deepEqual(t2.sent, [
    { text: true, content: 'a', cid: 'c1' },
    { text: true, content: 'b', cid: 'c2' },
    { text: true, content: 'c', cid: 'c3' },
    { text: true, content: 'd', cid: 'c4' }
  ]);
  assert.deepEqual(chat.list.view().map(function (v) { return v.key; }), ['m1', 'm2', 'pc3', 'pc4'], 'replayed copies hide their bubbles');
  // the server answers a known cid with the original echo, stores the others
  t2.serverSend(Object.assign(room.frame(a, 'user'), { cid: 'c1' }));
  t2.serverSend(Object.assign(room.frame(b, 'user'), { cid: 'c2' }));
  store(room, t2, t2.sent[2]);
  store(room, t2, t2.sent[3]);
  assert.equal(chat.list.pending.length, 0);
  assert.deepEqual(chat.list.messages.map(function (m) { return m.content; }), ['a', 'b', 'c', 'd']);
  assert.deepEqual(room.messages.map(function (m) { return m.content; }), ['a', 'b', 'c', 'd'], 'each stored once');
  chat.stop();
});

test('chat: after maxAttempts sends without an echo the message is marked failed; retry starts over; delete', async function () {
  const { wx, chat, timers } = setup({ maxAttempts: 2 });
  await chat.start();
  await settle();
  join(wx.sockets[0]);
  const cid = chat.send('stuck');
  for (let i = 0; i < 2; i++) {
    wx.sockets[wx.sockets.length - 1].serverClose(1006);
    timers.flush();
    await settle();
    join(wx.sockets[wx.sockets.length - 1]);
  }
  const sends = wx.sockets.map(function (s) { return s.sent.length; });
  assert.deepEqual(sends, [1, 1, 0], 'two attempts, no third');
  let v = chat.list.view()[0];
  assert.equal(v.failed, true);
  assert.match(v.notice, /not sent/i);
  assert.ok(chat.retry(cid));
  const t = wx.sockets[wx.sockets.length - 1];
  assert.deepEqual(t.sent, [{ text: true, content: 'stuck', cid: cid }], 'the same cid again');
  assert.equal(chat.list.view()[0].pending, true);
  t.serverSend({ type: 'error', error: 'ERR_BAD_MESSAGE', message: 'content too long', cid: cid });
  v = chat.list.view()[0];
  assert.equal(v.failed, true);
  assert.ok(chat.remove(cid));
  assert.deepEqual(chat.list.view(), []);
  chat.stop();
});

test('chat: a failed socket send takes the connection down; the message goes again after the reconnect', async function () {
  const { wx, chat, timers, room } = setup();
  await chat.start();
  await settle();
  const t1 = wx.sockets[0];
  join(t1);
  t1.failSends = true;
  chat.send('lost');
  await settle();
  assert.equal(chat.state, 'reconnecting');
  timers.flush();
  await settle();
  const t2 = wx.sockets[1];
  join(t2);
  assert.deepEqual(t2.sent, [{ text: true, content: 'lost', cid: 'c1' }]);
  store(room, t2, t2.sent[0]);
  assert.equal(chat.list.pending.length, 0);
  chat.stop();
});

test('chat: a replay above since+1 is a hole, paged from /history; too large a hole is cut and paged on scroll', async function () {
  const { wx, room, chat, timers, asked } = setup({ pageSize: 5, historyPage: 4, fillMax: 8 });
  for (let i = 0; i < 10; i++) room.add();
  await chat.start();
  await settle();
  join(wx.sockets[0]);
  assert.deepEqual(ids(chat), [6, 7, 8, 9, 10]);
  wx.sockets[0].serverClose(1006);
  for (let i = 0; i < 12; i++) room.add(); // 11..22 missed
  timers.flush();
  await settle();
  const t = wx.sockets[1];
  assert.equal(params(t.url).since, '10');
  join(t);
  // replay limit 5: only 18..22
  for (let id = 18; id <= 22; id++) t.serverSend(room.frame(room.messages[id - 1]));
  await settle(20);
  assert.deepEqual(ids(chat), [6, 7, 8, 9, 10].concat([11, 12, 13, 14, 15, 16, 17]).concat([18, 19, 20, 21, 22]));
  assert.deepEqual(chat.list.gaps, []);
  assert.deepEqual(asked.slice(1), [{ before: 18, limit: 4 }, { before: 14, limit: 3 }]);

  // a hole larger than fillMax: the newest 8 are paged, the rest is cut off below
  t.serverClose(1006);
  for (let i = 0; i < 20; i++) room.add(); // 23..42 missed
  timers.flush();
  await settle();
  const t3 = wx.sockets[2];
  assert.equal(params(t3.url).since, '22');
  join(t3);
  for (let id = 38; id <= 42; id++) t3.serverSend(room.frame(room.messages[id - 1]));
  await settle(20);
  assert.deepEqual(ids(chat), [30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42]);
  assert.equal(chat.list.hasOlder, true);
  assert.deepEqual(chat.list.gaps, []);
  // scrolling up pages the rest
  await chat.loadOlder();
  assert.deepEqual(ids(chat).slice(0, 6), [25, 26, 27, 28, 29, 30]);
  chat.stop();
});

test('chat: older pages keep coming past the cap; the flag stays honest; no refetch of the same page', async function () {
  const { wx, room, chat, asked } = setup({ pageSize: 4, max: 8 });
  for (let i = 0; i < 18; i++) room.add();
  await chat.start();
  await settle();
  join(wx.sockets[0]);
  assert.deepEqual(ids(chat), [15, 16, 17, 18]);
  const befores = [];
  for (;;) {
    const r = await chat.loadOlder();
    if (!r) break;
    befores.push(r.before);
    assert.ok(ids(chat).length <= 8, 'the cap holds');
  }
  assert.deepEqual(befores, [15, 11, 7, 3], 'each page asked once, from the oldest held');
  assert.deepEqual(ids(chat), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(chat.list.hasOlder, false);
  assert.equal(chat.list.atLatest, false);
  assert.equal(await chat.loadOlder(), null, 'at the start of the room: no request');
  const before = asked.length;
  // live messages while away from the live end wait, then come back with the newest page
  const m19 = room.add();
  wx.sockets[0].serverSend(room.frame(m19));
  assert.equal(chat.list.view().length, 8);
  await chat.jumpToLatest();
  assert.equal(asked.length, before + 1);
  assert.deepEqual(ids(chat), [16, 17, 18, 19]);
  assert.equal(chat.list.atLatest, true);
  assert.equal(chat.list.hasOlder, true);
  chat.stop();
});

test('chat: images show at once with their upload progress; a failed upload is marked and uploaded again on retry', async function () {
  const { wx, room, chat } = setup();
  wx.holdUploads = true;
  await chat.start();
  await settle();
  const t = wx.sockets[0];
  join(t);
  const cid = chat.sendImage('wxfile://tmp/a.png');
  let v = chat.list.view()[0];
  assert.equal(v.uploading, true);
  assert.equal(v.url, 'wxfile://tmp/a.png');
  await settle();
  wx.pendingUploads[0].progress(40);
  assert.equal(chat.list.view()[0].progress, 40);
  wx.uploadImpl = function () { return { statusCode: 413, data: { error: 'ERR_TOO_LARGE', message: 'too large' } }; };
  wx.pendingUploads[0].finish();
  await settle();
  v = chat.list.view()[0];
  assert.equal(v.failed, true);
  assert.match(v.notice, /too large/i);
  assert.deepEqual(t.sent, []);
  wx.uploadImpl = function () { return { statusCode: 200, data: { url: 'https://chat.test/media/a', id: 'a', mime: 'image/png', size: 1, width: 1, height: 1 } }; };
  chat.retry(cid);
  await settle();
  assert.equal(wx.pendingUploads.length, 2);
  wx.pendingUploads[1].finish();
  await settle();
  assert.deepEqual(t.sent, [{ gallery: true, url: 'https://chat.test/media/a', cid: cid }]);
  const m = room.add({ uid: 'u-me', text: undefined, content: undefined, gallery: true, url: 'https://chat.test/media/a' });
  t.serverSend(Object.assign(room.frame(m, 'user'), { cid: cid }));
  assert.equal(chat.list.pending.length, 0);
  assert.equal(chat.list.messages[0].gallery, true);
  chat.stop();
});

test('chat: reactions, recall and typing frames once in the room; typing at most every 3 s; POST /read at most once a second', async function () {
  let now = 10000;
  const { wx, room, chat, timers, client } = setup({ now: function () { return now; } });
  const reads = [];
  const history = wx.requestImpl;
  wx.requestImpl = function (r) {
    if (new URL(r.url).pathname === '/read') {
      reads.push(r.data);
      return { statusCode: 200, data: { code: 0 } };
    }
    return history(r);
  };
  room.add({ uid: 'u-me', nickName: 'Me', time: now - 1000 });
  room.add({ time: now - 500 });
  await chat.start();
  await settle();
  const t = wx.sockets[0];
  assert.equal(chat.react(2, '👍'), false, 'not in the room yet');
  assert.equal(chat.typing('h'), false);
  join(t);
  assert.equal(chat.react(2, '👍'), true);
  assert.ok(chat.recallLeft(1) > 100000, 'own message, a second old');
  assert.equal(chat.recallLeft(2), 0, 'someone else\'s');
  assert.equal(chat.recall(1), true);
  assert.equal(chat.typing(''), false, 'nothing typed');
  assert.equal(chat.typing('h'), true);
  now += 1000;
  assert.equal(chat.typing('he'), false);
  now += 2000;
  assert.equal(chat.typing('hel'), true);
  chat.send('hello');
  assert.equal(chat.typing('n'), false, 'the next message too waits out the 3 s (the server would drop it)');
  assert.deepEqual(t.sent, [{ react: 2, emoji: '👍' }, { recall: 1 }, { typing: true }, { typing: true }, { text: true, content: 'hello', cid: 'c1' }]);
  // the events come back and change the list
  const events = [{ type: 'reaction', id: 3, target: 2, emoji: '👍', uid: 'u-me', on: true }, { type: 'recall', id: 4, target: 1, uid: 'u-me' }];
  events.forEach(function (e) { room.messages.push(e); t.serverSend(e); });
  assert.deepEqual(chat.list.view()[1].reactions, [{ emoji: '👍', count: 1, mine: true }]);
  assert.equal(chat.list.view()[0].recallText, 'You recalled a message');
  assert.equal(chat.recallLeft(1), 0);
  // read positions: the newest id seen, events included
  chat.read();
  await settle();
  assert.deepEqual(reads, [{ room: 'lobby', id: 4 }]);
  assert.equal(client.unread.count('lobby'), 0);
  store(room, t, t.sent[4]);
  chat.read();
  await settle();
  assert.equal(reads.length, 1, 'within a second of the last');
  now += 1000;
  timers.flush();
  await settle();
  assert.deepEqual(reads[1], { room: 'lobby', id: 5 });
  chat.stop();
});

test('chat: since is the room\'s last id when the first page was read (X-Last-Id): the page holds the events up to it', async function () {
  const { wx, room, chat } = setup();
  room.add();
  room.messages.push({ type: 'reaction', id: 2, target: 1, emoji: '👍', uid: 'u-b', on: true });
  room.messages[0].reactions = { '👍': 1 }; // as /history?v=2 folds it in
  await chat.start();
  await settle();
  const t = wx.sockets[0];
  assert.equal(params(t.url).since, '2');
  join(t);
  // the same event, delivered late on the socket, is not counted twice
  t.serverSend(room.messages[1]);
  assert.deepEqual(chat.list.view()[0].reactions, [{ emoji: '👍', count: 1, mine: false }]);
  t.serverSend({ type: 'reaction', id: 3, target: 1, emoji: '👍', uid: 'u-c', on: true });
  assert.deepEqual(chat.list.view()[0].reactions, [{ emoji: '👍', count: 2, mine: false }]);
  chat.stop();
});

test('chat: a message unconfirmed for longer than the server keeps cids waits for the replay; stored once', async function () {
  let clock = 1000000;
  const { wx, room, chat, timers } = setup({ now: function () { return clock; } });
  await chat.start();
  await settle();
  const t1 = wx.sockets[0];
  join(t1);
  chat.send('a');
  chat.send('b');
  // the server stored "a"; the socket drops before its echo, "b" was lost
  const a = room.add({ uid: 'u-me', content: 'a' });
  t1.serverClose(1006);
  clock += 3 * 60 * 1000; // away for 3 minutes: the server no longer knows c1
  timers.flush();
  await settle();
  const t2 = wx.sockets[1];
  t2.serverOpen();
  t2.serverSend({ type: 'system', num: 1 });
  assert.deepEqual(t2.sent, [], 'nothing goes before the replay is in');
  t2.serverSend(room.frame(a, 'user')); // the replay: "a" was stored
  timers.flush();
  assert.deepEqual(t2.sent, [{ text: true, content: 'b', cid: 'c2' }], 'only the message the replay did not show goes again');
  store(room, t2, t2.sent[0]);
  assert.deepEqual(room.messages.map(function (m) { return m.content; }), ['a', 'b'], 'each stored once');
  assert.equal(chat.list.pending.length, 0);
  chat.stop();
});

test('chat: a failed first history read is tried again before the socket connects with its since', async function () {
  const { wx, room, chat, timers, changes } = setup();
  for (let i = 0; i < 3; i++) room.add();
  const serve = wx.requestImpl;
  let failures = 2;
  wx.requestImpl = function (r) {
    if (new URL(r.url).pathname === '/history' && failures > 0) {
      failures--;
      return { statusCode: 503, header: { 'Retry-After': '1' }, data: { error: 'ERR_UNAVAILABLE', message: 'busy' } };
    }
    return serve(r);
  };
  const started = chat.start();
  await settle();
  assert.equal(wx.sockets.length, 0, 'no socket without a since');
  timers.flush();
  await settle();
  timers.flush();
  await settle();
  await started;
  assert.equal(changes.filter(function (c) { return c[0] === 'history-error'; }).length, 2);
  assert.equal(wx.sockets.length, 1);
  assert.equal(params(wx.sockets[0].url).since, '3');
  assert.deepEqual(ids(chat), [1, 2, 3]);
  chat.stop();
});
