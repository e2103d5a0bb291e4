'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createMessageList } = require('../utils/messages');

function cids() {
  let n = 0;
  return function () { return 'cid' + (++n); };
}

function msg(id, type, extra) {
  return Object.assign({ type: type || 'remote', id: id, number: 2, time: 1700000000000 + id, uid: 'u-other', nickName: 'B', avatarUrl: 'https://x/media/b', text: true, content: 'm' + id }, extra || {});
}

test('messages: out-of-order and duplicate frames merge by id, once each', function () {
  const list = createMessageList();
  const kinds = [3, 1, 2, 2, 3, 5, 1, 4].map(function (id) { return list.applyFrame(msg(id)).kind; });
  assert.deepEqual(kinds, ['message', 'message', 'message', 'duplicate', 'duplicate', 'message', 'duplicate', 'message']);
  assert.deepEqual(list.messages.map(function (m) { return m.id; }), [1, 2, 3, 4, 5]);
  assert.deepEqual(list.view().map(function (m) { return m.content; }), ['m1', 'm2', 'm3', 'm4', 'm5']);
  assert.equal(list.firstId, 1);
  assert.equal(list.lastId, 5);
});

test('messages: history pages merge with live frames', function () {
  const list = createMessageList({ me: { uid: 'u-me' } });
  list.applyFrame(msg(10));
  list.applyFrame(msg(11));
  const added = list.addHistory([msg(8, undefined, { type: undefined, uid: 'u-me' }), msg(9, undefined, { type: undefined }), msg(10)]);
  assert.equal(added, 2);
  const v = list.view();
  assert.deepEqual(v.map(function (m) { return m.id; }), [8, 9, 10, 11]);
  assert.deepEqual(v.map(function (m) { return m.own; }), [true, false, false, false]);
});

test('messages: online count from system, presence and message frames', function () {
  const list = createMessageList();
  assert.equal(list.applyFrame({ type: 'system', num: 3 }).kind, 'system');
  assert.equal(list.online, 3);
  list.applyFrame(msg(1, 'remote', { number: 4 }));
  assert.equal(list.online, 4);
  list.applyFrame({ type: 'presence', num: 2, event: 'leave', uid: 'x' });
  assert.equal(list.online, 2);
  assert.equal(list.applyFrame({ type: 'whatever' }).kind, 'ignored');
  assert.equal(list.applyFrame(null).kind, 'ignored');
});

test('messages: type user → own bubble, remote → other with nickname and avatar', function () {
  const list = createMessageList();
  list.applyFrame(msg(1, 'user', { uid: 'u-me', nickName: 'A' }));
  list.applyFrame(msg(2, 'remote', { gallery: true, text: undefined, content: undefined, url: 'https://x/media/p' }));
  const [a, b] = list.view();
  assert.equal(a.own, true);
  assert.equal(a.domId, 'msg-1');
  assert.equal(b.own, false);
  assert.equal(b.nickName, 'B');
  assert.equal(b.avatarUrl, 'https://x/media/b');
  assert.equal(b.gallery, true);
  assert.equal(b.url, 'https://x/media/p');
  assert.equal(b.text, undefined);
});

test('messages: own pending messages are matched by cid', function () {
  const list = createMessageList({ newCid: cids(), me: { uid: 'u-me', nickName: 'A', avatarUrl: 'https://x/a' } });
  const t = list.addPending({ text: 'hello' });
  const g = list.addPending({ url: 'https://x/media/p' });
  assert.deepEqual(t, { cid: 'cid1', frame: { text: true, content: 'hello', cid: 'cid1' } });
  assert.deepEqual(g.frame, { gallery: true, url: 'https://x/media/p', cid: 'cid2' });
  list.applyFrame(msg(1));
  let v = list.view();
  assert.deepEqual(v.map(function (m) { return m.key; }), ['m1', 'pcid1', 'pcid2']);
  assert.equal(v[1].pending, true);
  assert.equal(v[1].own, true);
  assert.equal(v[1].nickName, 'A');
  // the gallery comes back first: only it is settled
  const r = list.applyFrame(msg(2, 'user', { cid: 'cid2', text: undefined, gallery: true, url: 'https://x/media/p' }));
  assert.deepEqual(r, { kind: 'message', id: 2, own: true, cid: 'cid2' });
  v = list.view();
  assert.deepEqual(v.map(function (m) { return m.key; }), ['m1', 'm2', 'pcid1']);
  list.applyFrame(msg(3, 'user', { cid: 'cid1', content: 'hello' }));
  assert.deepEqual(list.view().map(function (m) { return m.key; }), ['m1', 'm2', 'm3']);
  assert.equal(list.pending.length, 0);
});

test('messages: a replayed own message without cid settles the pending copy by content', function () {
  const list = createMessageList({ newCid: cids() });
  list.addPending({ text: 'same' });
  list.addPending({ text: 'other' });
  list.applyFrame(msg(7, 'user', { content: 'same' }));
  assert.deepEqual(list.pending.map(function (p) { return p.content; }), ['other']);
  // somebody else's identical text does not
  list.applyFrame(msg(8, 'remote', { content: 'other' }));
  assert.equal(list.pending.length, 1);
});

test('messages: ERR_RATE_LIMITED / ERR_BAD_MESSAGE become notices on the pending message', function () {
  const list = createMessageList({ newCid: cids() });
  list.addPending({ text: 'one' });
  list.addPending({ text: 'two' });
  assert.deepEqual(list.applyFrame({ type: 'error', error: 'ERR_RATE_LIMITED', message: 'slow down', cid: 'cid1' }), { kind: 'error', code: 'ERR_RATE_LIMITED', cid: 'cid1' });
  list.applyFrame({ type: 'error', error: 'ERR_BAD_MESSAGE', message: 'content too long', cid: 'cid2' });
  const v = list.view();
  assert.equal(v[0].failed, true);
  assert.equal(v[0].pending, false);
  assert.match(v[0].notice, /too fast/i);
  assert.match(v[1].notice, /content too long/);
  assert.equal(list.notice, '');
  // an error frame for no known message is a general notice
  list.applyFrame({ type: 'error', error: 'ERR_BAD_MESSAGE', message: 'invalid JSON' });
  assert.match(list.notice, /invalid JSON/);
  list.clearNotice();
  assert.equal(list.notice, '');
  // retry gives the same frame again and clears the notice
  assert.deepEqual(list.retryPending('cid1'), { text: true, content: 'one', cid: 'cid1' });
  assert.equal(list.view()[0].failed, false);
  assert.equal(list.view()[0].notice, '');
  assert.equal(list.failPending('cid1'), true);
  assert.match(list.view()[0].notice, /not connected/i);
  assert.equal(list.removePending('cid1'), true);
  assert.equal(list.retryPending('cid1'), null);
});

test('messages: the list keeps at most `max` messages, dropping the oldest', function () {
  const list = createMessageList({ max: 3 });
  [1, 2, 3, 4, 5].forEach(function (id) { list.applyFrame(msg(id)); });
  assert.deepEqual(list.messages.map(function (m) { return m.id; }), [3, 4, 5]);
  assert.equal(list.applyFrame(msg(1)).kind, 'ignored');
});
