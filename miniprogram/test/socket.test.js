'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createClient } = require('../utils/client');
const { backoffDelay, STATES } = require('../utils/socket');
const { createFakeWx, createManualTimers, settle, MAGIC, CONFIG } = require('./fake-wx');

function setup(opts) {
  const wx = createFakeWx();
  const client = createClient({ wx: wx, config: CONFIG });
  client.session.set({ id: 'sid', skey: 'skey' });
  let n = 0;
  wx.requestImpl = function (r) {
    if (r.url.endsWith('/login')) {
      n++;
      return { statusCode: 200, data: { [MAGIC]: 1, session: { id: 'sid' + n, skey: 'skey' + n }, userInfo: { uid: 'u' } } };
    }
    return { statusCode: 404, data: '' };
  };
  const timers = createManualTimers();
  const states = [];
  const lastInfo = { value: null };
  const frames = [];
  const socket = client.socket(Object.assign({
    timers: timers,
    random: function () { return 1; }, // no jitter: delays are exact
    onState: function (s, info) { states.push(s); if (s === 'reconnecting') lastInfo.value = info; },
    onFrame: function (f) { frames.push(f); }
  }, opts || {}));
  return { wx, client, timers, states, lastInfo, frames, socket };
}

function params(url) {
  return Object.fromEntries(new URL(url).searchParams);
}

test('socket: idle → connecting → open, the session in headers only', async function () {
  const { wx, socket, states, frames } = setup();
  assert.equal(socket.state, STATES.IDLE);
  assert.equal(socket.send({ text: true, content: 'x' }), false);
  socket.start();
  assert.equal(socket.state, STATES.CONNECTING);
  await settle();
  assert.equal(wx.sockets.length, 1);
  const t = wx.sockets[0];
  assert.equal(t.url.split('?')[0], 'wss://chat.test/ws');
  assert.deepEqual(params(t.url), { room: 'lobby', v: '2' }); // the session is in the header only, never in the URL
  assert.deepEqual(t.header, { 'X-WX-Id': 'sid', 'X-WX-Skey': 'skey' });
  t.serverOpen();
  assert.equal(socket.state, STATES.OPEN);
  t.serverSend({ type: 'system', num: 2 });
  assert.deepEqual(frames, [{ type: 'system', num: 2 }]);
  assert.equal(socket.send({ text: true, content: 'hi', cid: 'c1' }), true);
  assert.deepEqual(t.sent, [{ text: true, content: 'hi', cid: 'c1' }]);
  assert.deepEqual(states, ['connecting', 'open']);
});

test('socket: logs in first when there is no session', async function () {
  const { wx, client, socket } = setup({ room: 'r1', since: 5 });
  client.session.clear();
  socket.start();
  await settle();
  assert.equal(wx.logins, 1);
  assert.deepEqual(params(wx.sockets[0].url), { room: 'r1', since: '5', v: '2' }, 'opted in to recall, reactions, typing, mentions');
  assert.deepEqual(wx.sockets[0].header, { 'X-WX-Id': 'sid1', 'X-WX-Skey': 'skey1' });
});

test('socket: reconnect after a close carries since=<last id seen>', async function () {
  const { wx, socket, timers, states, lastInfo } = setup();
  socket.start();
  await settle();
  const t = wx.sockets[0];
  t.serverOpen();
  t.serverSend({ type: 'system', num: 1 });
  t.serverSend({ type: 'remote', id: 41, text: true, content: 'a' });
  t.serverSend({ type: 'user', id: 42, text: true, content: 'b' });
  t.serverSend({ type: 'reaction', id: 43, target: 41, emoji: '👍', uid: 'u', on: true });
  t.serverSend({ type: 'recall', id: 44, target: 42, uid: 'u' });
  t.serverSend({ type: 'typing', id: 98, uid: 'u' });
  t.serverSend({ type: 'error', error: 'ERR_BAD_MESSAGE', id: 99 });
  t.serverSend('not json');
  assert.equal(socket.lastId, 44, 'events count, typing and errors do not');
  t.serverClose(1006, '');
  assert.equal(socket.state, STATES.RECONNECTING);
  assert.equal(lastInfo.value.delay, 500);
  assert.equal(lastInfo.value.code, 1006);
  assert.equal(wx.sockets.length, 1);
  assert.equal(timers.flush(), 1);
  await settle();
  assert.equal(wx.sockets.length, 2);
  assert.equal(params(wx.sockets[1].url).since, '44');
  wx.sockets[1].serverOpen();
  assert.equal(socket.state, STATES.OPEN);
  assert.deepEqual(states, ['connecting', 'open', 'reconnecting', 'connecting', 'open']);
});

test('backoff: grows by the factor, is capped, jitter stays within bounds', function () {
  const one = function () { return 1; };
  const zero = function () { return 0; };
  const o = { base: 500, factor: 2, max: 8000, jitter: 0.5 };
  assert.deepEqual([0, 1, 2, 3, 4, 5, 10].map(function (a) { return backoffDelay(a, o, one); }),
    [500, 1000, 2000, 4000, 8000, 8000, 8000]);
  assert.deepEqual([0, 1, 5].map(function (a) { return backoffDelay(a, o, zero); }), [250, 500, 4000]);
  for (let a = 0; a < 20; a++) {
    const d = backoffDelay(a, o, Math.random);
    const raw = Math.min(8000, 500 * Math.pow(2, a));
    assert.ok(d >= raw / 2 && d <= raw, 'delay ' + d + ' for attempt ' + a);
  }
  assert.equal(backoffDelay(100, undefined, one), 30000);
});

test('socket: repeated failures back off with growth and cap; a good connection resets', async function () {
  let clock = 0;
  const { wx, socket, timers } = setup({ backoff: { base: 100, factor: 2, max: 1000 }, now: function () { return clock; } });
  socket.start();
  await settle();
  for (let i = 0; i < 6; i++) {
    wx.sockets[wx.sockets.length - 1].serverError('refused');
    assert.equal(socket.state, STATES.RECONNECTING);
    timers.flush();
    await settle();
  }
  assert.deepEqual(timers.delays, [100, 200, 400, 800, 1000, 1000]);
  const t = wx.sockets[wx.sockets.length - 1];
  t.serverOpen();
  t.serverSend({ type: 'system', num: 1 });
  clock += 10000; // in the room for 10 s: a good connection
  t.serverClose(1001, 'going away');
  assert.equal(timers.delays[timers.delays.length - 1], 100);
});

test('socket: a server that admits and closes at once is not hammered: the backoff goes on', async function () {
  let clock = 0;
  const { wx, socket, timers } = setup({ backoff: { base: 100, factor: 2, max: 1000 }, now: function () { return clock; } });
  socket.start();
  await settle();
  for (let i = 0; i < 5; i++) {
    const t = wx.sockets[wx.sockets.length - 1];
    t.serverOpen();
    t.serverSend({ type: 'system', num: 1 });
    clock += 50;
    t.serverClose(1011, 'room failed');
    timers.flush();
    await settle();
  }
  assert.deepEqual(timers.delays, [100, 200, 400, 800, 1000]);
});

test('socket: onError followed by onClose schedules one reconnect', async function () {
  const { wx, socket, timers } = setup();
  socket.start();
  await settle();
  wx.sockets[0].serverOpen();
  wx.sockets[0].serverError('reset');
  wx.sockets[0].serverClose(1006);
  assert.equal(timers.size, 1);
});

test('socket: connectSocket fail → reconnecting', async function () {
  const { wx, socket, timers } = setup();
  wx.connectImpl = function () { return 'fail'; };
  socket.start();
  await settle();
  assert.equal(socket.state, STATES.RECONNECTING);
  assert.equal(timers.size, 1);
  wx.connectImpl = null;
  timers.flush();
  await settle();
  assert.equal(wx.sockets.length, 1);
});

test('socket: a failed login before connecting → reconnecting with backoff', async function () {
  const { wx, client, socket, timers } = setup();
  client.session.clear();
  wx.requestImpl = function () { return { statusCode: 401, data: { [MAGIC]: 1, error: 'ERR_LOGIN_FAILED' } }; };
  socket.start();
  await settle();
  assert.equal(socket.state, STATES.RECONNECTING);
  assert.equal(wx.sockets.length, 0);
  assert.equal(timers.size, 1);
});

test('socket: ERR_INVALID_SESSION frame → session cleared, one login, reconnect; the 1008 close is no loop', async function () {
  const { wx, client, socket, timers, frames } = setup();
  socket.start();
  await settle();
  const t = wx.sockets[0];
  t.serverOpen();
  t.serverSend({ [MAGIC]: 1, error: 'ERR_INVALID_SESSION', message: 'expired' });
  t.serverClose(1008, 'invalid session');
  assert.equal(frames.length, 0);
  await settle();
  assert.equal(wx.logins, 1);
  assert.equal(wx.sockets.length, 2);
  assert.equal(timers.size, 0);
  assert.equal(wx.sockets[1].header['X-WX-Skey'], 'skey1');
  assert.equal(params(wx.sockets[1].url)['X-WX-Skey'], undefined);
  assert.equal(client.session.get().skey, 'skey1');
  wx.sockets[1].serverOpen();
  wx.sockets[1].serverSend({ type: 'system', num: 1 });
  assert.equal(socket.state, STATES.OPEN);
  await settle();
  assert.equal(wx.sockets.length, 2);
  assert.equal(wx.logins, 1);
});

test('socket: refused again right after a fresh login → backoff, not a tight loop', async function () {
  const { wx, socket, timers } = setup();
  socket.start();
  await settle();
  const refuse = function (t) {
    t.serverOpen();
    t.serverSend({ [MAGIC]: 1, error: 'ERR_INVALID_SESSION' });
    t.serverClose(1008);
  };
  refuse(wx.sockets[0]);
  await settle();
  assert.equal(wx.sockets.length, 2);
  refuse(wx.sockets[1]);
  await settle();
  assert.equal(wx.sockets.length, 2);
  assert.equal(wx.logins, 1);
  assert.equal(socket.state, STATES.RECONNECTING);
  assert.equal(timers.size, 1);
  timers.flush();
  await settle();
  assert.equal(wx.logins, 2);
  assert.equal(wx.sockets.length, 3);
});

test('socket: stop() closes, cancels the timer and ignores late events', async function () {
  const { wx, socket, timers, states } = setup();
  socket.start();
  await settle();
  const t = wx.sockets[0];
  t.serverOpen();
  socket.stop();
  assert.equal(socket.state, STATES.CLOSED);
  assert.equal(t.closed.by, 'client');
  assert.equal(timers.size, 0);
  t.serverClose(1006);
  assert.equal(socket.state, STATES.CLOSED);
  assert.equal(states[states.length - 1], 'closed');
  // stop while waiting to reconnect
  socket.start();
  await settle();
  wx.sockets[1].serverClose(1006);
  assert.equal(timers.size, 1);
  socket.stop();
  assert.equal(timers.size, 0);
  assert.equal(wx.sockets.length, 2);
});

test('socket: stop() while the login is still running opens nothing', async function () {
  const { wx, client, socket } = setup();
  client.session.clear();
  socket.start();
  socket.stop();
  await settle();
  assert.equal(wx.sockets.length, 0);
  assert.equal(socket.state, STATES.CLOSED);
});

test('socket: ERR_BAD_ROOM ends in closed without reconnecting', async function () {
  const { wx, socket, timers, frames } = setup({ room: 'bad room' });
  socket.start();
  await settle();
  wx.sockets[0].serverOpen();
  wx.sockets[0].serverSend({ type: 'error', error: 'ERR_BAD_ROOM', message: 'bad room' });
  wx.sockets[0].serverClose(1008);
  assert.equal(socket.state, STATES.CLOSED);
  assert.equal(timers.size, 0);
  assert.equal(frames[0].error, 'ERR_BAD_ROOM');
});

test('socket: reconnectNow skips the backoff wait', async function () {
  const { wx, socket, timers } = setup();
  socket.start();
  await settle();
  assert.equal(socket.reconnectNow(), false);
  wx.sockets[0].serverClose(1006);
  assert.equal(socket.reconnectNow(), true);
  assert.equal(timers.size, 0);
  await settle();
  assert.equal(wx.sockets.length, 2);
});

test('socket: a send that fails (SocketTask.send fail) takes the connection down and reconnects', async function () {
  const { wx, socket, timers, states } = setup();
  socket.start();
  await settle();
  const t = wx.sockets[0];
  t.serverOpen();
  t.serverSend({ type: 'system', num: 1 });
  assert.equal(socket.joined, true);
  t.failSends = true;
  assert.equal(socket.send({ text: true, content: 'x', cid: 'c1' }), true, 'handed over; the failure comes later');
  await settle();
  assert.equal(socket.state, STATES.RECONNECTING);
  assert.equal(socket.joined, false);
  assert.equal(t.closed.by, 'client');
  assert.equal(timers.size, 1);
  timers.flush();
  await settle();
  wx.sockets[1].serverOpen();
  assert.equal(socket.joined, false, 'open, not yet in the room');
  wx.sockets[1].serverSend({ type: 'system', num: 1 });
  assert.equal(socket.joined, true);
  assert.deepEqual(states.slice(-3), ['reconnecting', 'connecting', 'open']);
});
