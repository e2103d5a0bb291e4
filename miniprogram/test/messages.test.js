'use strict';
process.env.TZ = 'UTC';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createMessageList, SHADOW_TRUST } = require('../utils/messages');
const timefmt = require('../utils/time');

function cids() {
  let n = 0;
  return function () { return 'cid' + (++n); };
}

const T0 = Date.UTC(2024, 2, 7, 14, 0, 0); // 2024-03-07 14:00 UTC

function msg(id, type, extra) {
  return Object.assign({ type: type || 'remote', id: id, number: 2, time: T0 + id * 1000, uid: 'u-other', nickName: 'B', avatarUrl: 'https://x/media/b', text: true, content: 'm' + id }, extra || {});
}

function ids(list) {
  return list.messages.map(function (m) { return m.id; });
}

function range(a, b) {
  const out = [];
  for (let i = a; i <= b; i++) out.push(i);
  return out;
}

test('messages: out-of-order and duplicate frames merge by id, once each', function () {
  const list = createMessageList();
  const kinds = [3, 1, 2, 2, 3, 5, 1, 4].map(function (id) { return list.applyFrame(msg(id)).kind; });
  assert.deepEqual(kinds, ['message', 'old', 'old', 'old', 'duplicate', 'message', 'old', 'message']);
  assert.deepEqual(ids(list), [3, 4, 5]);
  assert.deepEqual(list.gaps, [], 'the hole 4 was filled by its message');
  assert.equal(list.firstId, 3);
  assert.equal(list.lastId, 5);
});

test('messages: history pages merge with live frames', function () {
  const list = createMessageList({ me: { uid: 'u-me' } });
  list.addLatest([msg(8, undefined, { type: undefined, uid: 'u-me' }), msg(9, undefined, { type: undefined }), msg(10)], 3);
  list.applyFrame(msg(10));
  list.applyFrame(msg(11));
  const v = list.view();
  assert.deepEqual(v.map(function (m) { return m.id; }), [8, 9, 10, 11]);
  assert.deepEqual(v.map(function (m) { return m.own; }), [true, false, false, false]);
  assert.equal(list.hasOlder, true, 'a full first page: there may be older ones');
  list.addLatest([msg(1), msg(2)], 20);
  assert.equal(list.hasOlder, false, 'a short first page: nothing older');
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
  assert.equal(a.initial, 'A');
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
  assert.equal(r.kind, 'message');
  assert.equal(r.cid, 'cid2');
  v = list.view();
  assert.deepEqual(v.map(function (m) { return m.key; }), ['m1', 'm2', 'pcid1']);
  list.applyFrame(msg(3, 'user', { cid: 'cid1', content: 'hello' }));
  assert.deepEqual(list.view().map(function (m) { return m.key; }), ['m1', 'm2', 'm3']);
  assert.equal(list.pending.length, 0);
});

test('messages: an echo of a message already held (a re-sent cid) still settles its pending copy', function () {
  const list = createMessageList({ newCid: cids() });
  list.addPending({ text: 'x' });
  list.applyFrame(msg(4, 'user', { content: 'x' })); // replayed copy, no cid
  const r = list.applyFrame(msg(4, 'user', { content: 'x', cid: 'cid1' })); // the echo of the re-send
  assert.equal(r.kind, 'duplicate');
  assert.equal(r.cid, 'cid1');
  assert.equal(list.pending.length, 0);
});

test('messages: a replayed own copy without cid hides the pending bubble but keeps it for the re-send', function () {
  let t = 1000;
  const list = createMessageList({ newCid: cids(), now: function () { return t; } });
  list.addPending({ text: 'same' });
  list.addPending({ text: 'other' });
  list.markSent('cid1');
  list.markSent('cid2');
  list.applyFrame(msg(7, 'user', { content: 'same' }));
  assert.deepEqual(list.view().map(function (v) { return v.key; }), ['m7', 'pcid2'], 'no bubble shown twice');
  assert.deepEqual(list.unsent().map(function (u) { return u.cid; }), ['cid1', 'cid2'], 'both go again with their cids');
  // somebody else's identical text does not
  list.applyFrame(msg(8, 'remote', { content: 'other' }));
  assert.equal(list.view().length, 3);
  // past the server's cid window the replayed copy stands for the message
  t += SHADOW_TRUST + 1;
  assert.deepEqual(list.unsent().map(function (u) { return u.cid; }), ['cid2']);
  assert.deepEqual(list.pending.map(function (p) { return p.content; }), ['other']);
});

test('messages: error frames with a cid fail that message; retry and delete', function () {
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
  assert.deepEqual(list.unsent(), [], 'failed messages are not sent by themselves');
  // an error frame for no known message is a general notice
  list.applyFrame({ type: 'error', error: 'ERR_BAD_MESSAGE', message: 'invalid JSON' });
  assert.match(list.notice, /invalid JSON/);
  list.clearNotice();
  assert.equal(list.notice, '');
  // retry gives the same frame again, clears the notice, starts the count over
  list.markSent('cid1');
  assert.deepEqual(list.retryPending('cid1'), { frame: { text: true, content: 'one', cid: 'cid1' } });
  assert.equal(list.view()[0].failed, false);
  assert.equal(list.view()[0].notice, '');
  assert.equal(list.unsent()[0].attempts, 0);
  assert.equal(list.failPending('cid1'), true);
  assert.match(list.view()[0].notice, /not connected/i);
  assert.equal(list.removePending('cid1'), true);
  assert.equal(list.retryPending('cid1'), null);
  assert.deepEqual(list.view().map(function (x) { return x.key; }), ['pcid2']);
});

test('messages: uploads show the local file with progress, then go as a gallery frame', function () {
  const list = createMessageList({ newCid: cids() });
  const cid = list.addUpload('wxfile://tmp/a.png');
  let v = list.view()[0];
  assert.equal(v.uploading, true);
  assert.equal(v.progress, 0);
  assert.equal(v.url, 'wxfile://tmp/a.png');
  assert.deepEqual(list.unsent(), [], 'nothing to send before the upload ends');
  assert.equal(list.setProgress(cid, 42.4), true);
  assert.equal(list.setProgress(cid, 42), false, 'same percent: nothing to render');
  assert.equal(list.view()[0].progress, 42);
  list.failPending(cid, 'ERR_UPLOAD');
  assert.match(list.view()[0].notice, /upload failed/i);
  assert.deepEqual(list.retryPending(cid), { upload: 'wxfile://tmp/a.png' });
  assert.deepEqual(list.uploadDone(cid, 'https://x/media/a'), { gallery: true, url: 'https://x/media/a', cid: cid });
  v = list.view()[0];
  assert.equal(v.uploading, undefined);
  assert.equal(v.url, 'https://x/media/a');
  assert.deepEqual(list.unsent().map(function (u) { return u.cid; }), [cid]);
});

test('messages: live messages past the cap push the oldest out and set hasOlder', function () {
  const list = createMessageList({ max: 3 });
  list.addLatest([msg(1), msg(2)], 20);
  assert.equal(list.hasOlder, false);
  [3, 4, 5].forEach(function (id) { list.applyFrame(msg(id)); });
  assert.deepEqual(ids(list), [3, 4, 5]);
  assert.equal(list.hasOlder, true, 'what was pushed out can be paged back');
  assert.equal(list.applyFrame(msg(1)).kind, 'old');
});

test('messages: older pages past the cap push the newest out; live frames wait; addLatest comes back', function () {
  const list = createMessageList({ max: 5, newCid: cids() });
  list.addLatest(range(16, 20).map(function (i) { return msg(i); }), 5);
  list.addPending({ text: 'mine' });
  let r = list.addOlder(range(11, 15).map(function (i) { return msg(i); }), 5);
  assert.deepEqual(r, { added: 5, dropped: 5 });
  assert.deepEqual(ids(list), range(11, 15), 'the older page is kept, the newest go');
  assert.equal(list.atLatest, false);
  assert.equal(list.hasOlder, true);
  assert.deepEqual(list.view().map(function (v) { return v.id; }), range(11, 15), 'own pending bubbles stay at the live end');
  // live frames while away from the live end wait in the tail
  assert.equal(list.applyFrame(msg(21)).kind, 'detached');
  assert.equal(list.tailSize, 1);
  // the first message of the room: nothing older any more, no refetch
  r = list.addOlder([msg(1), msg(2)], 5);
  assert.equal(r.added, 2);
  assert.equal(list.hasOlder, false);
  assert.deepEqual(ids(list), [1, 2, 11, 12, 13], 'a deleted range (retention) is no hole');
  // a page that brings nothing new ends the paging too (no loop on the same page)
  const again = createMessageList({ max: 5 });
  again.addLatest(range(6, 10).map(function (i) { return msg(i); }), 5);
  assert.deepEqual(again.addOlder(range(6, 10).map(function (i) { return msg(i); }), 5), { added: 0, dropped: 0 });
  assert.equal(again.hasOlder, false);
  // back to the live end: newest page + tail
  list.addLatest(range(17, 20).map(function (i) { return msg(i); }), 4);
  assert.deepEqual(ids(list), range(17, 21));
  assert.equal(list.atLatest, true);
  assert.deepEqual(list.view().map(function (v) { return v.key; }).slice(-1), ['pcid1']);
});

test('messages: a replay that starts above since+1 opens a gap; fillGap closes it, cutGap gives up on it', function () {
  const list = createMessageList({ max: 100 });
  list.addLatest(range(1, 10).map(function (i) { return msg(i); }), 20);
  const r = list.applyFrame(msg(31)); // reconnect with since=10, replay limit 5: 26..31 replayed... first is 31 here
  assert.deepEqual(r.gap, { from: 11, to: 30 });
  list.applyFrame(msg(32));
  assert.deepEqual(list.gaps, [{ from: 11, to: 30 }]);
  // a page for another place is left out
  assert.equal(list.fillGap([msg(5)], 5, 99).stale, true);
  let f = list.fillGap(range(21, 30).map(function (i) { return msg(i); }), 10, 31);
  assert.deepEqual(f, { open: true, before: 21 });
  assert.deepEqual(list.gaps, [{ from: 11, to: 20 }]);
  f = list.fillGap(range(11, 20).map(function (i) { return msg(i); }), 10, 21);
  assert.deepEqual(f, { open: false });
  assert.deepEqual(ids(list), range(1, 32));
  // another hole, given up on: everything below it goes, older paging takes over
  list.applyFrame(msg(50));
  assert.deepEqual(list.gaps, [{ from: 33, to: 49 }]);
  list.fillGap(range(45, 49).map(function (i) { return msg(i); }), 5, 50);
  assert.deepEqual(list.gaps, [{ from: 33, to: 44 }]);
  list.cutGap();
  assert.deepEqual(ids(list), range(45, 50));
  assert.deepEqual(list.gaps, []);
  assert.equal(list.hasOlder, true);
  // a hole whose lower side is pushed out by the cap is no hole any more
  const small = createMessageList({ max: 4 });
  small.addLatest([msg(1), msg(2)], 2);
  small.applyFrame(msg(10));
  small.applyFrame(msg(11));
  small.applyFrame(msg(12));
  assert.deepEqual(ids(small), [2, 10, 11, 12]);
  small.applyFrame(msg(13));
  assert.deepEqual(small.gaps, []);
  assert.equal(small.hasOlder, true);
});

test('messages: time separators above the first message and after a pause of more than 5 minutes', function () {
  const now = T0 + 3600 * 1000;
  const list = createMessageList({ now: function () { return now; } });
  list.applyFrame(msg(1, 'remote', { time: T0 }));
  list.applyFrame(msg(2, 'remote', { time: T0 + 60 * 1000 }));
  list.applyFrame(msg(3, 'remote', { time: T0 + 6 * 60 * 1000 }));
  list.applyFrame(msg(4, 'remote', { time: T0 + 12 * 60 * 1000 + 1 }));
  assert.deepEqual(list.view().map(function (v) { return v.timeLabel; }), ['14:00', undefined, undefined, '14:12']);
  assert.equal(timefmt.label(T0 - 24 * 3600 * 1000, now), 'Yesterday 14:00');
  assert.equal(timefmt.label(T0 - 3 * 24 * 3600 * 1000, now), '3/4 14:00');
  assert.equal(timefmt.label(Date.UTC(2023, 11, 31, 9, 5), now), '2023/12/31 09:05');
  assert.equal(timefmt.label(0, now), '');
});

// ------------------------------------------------------------ recall, reactions, typing, mentions

function react(id, target, emoji, uid, on) {
  return { type: 'reaction', id: id, target: target, emoji: emoji, uid: uid, on: on !== false };
}

test('messages: reactions and recalls change the message they target, once each; views show chips and the recall line', function () {
  const list = createMessageList({ me: { uid: 'u-me', nickName: 'Me' } });
  list.addLatest([msg(1), msg(2, undefined, { type: undefined, uid: 'u-me', reactions: { '👍': 2 } })], 20);
  assert.equal(list.applyFrame(react(3, 1, '🎉', 'u-other')).changed, true);
  assert.equal(list.applyFrame(react(4, 2, '👍', 'u-me')).changed, true);
  let v = list.view();
  assert.deepEqual(v[0].reactions, [{ emoji: '🎉', count: 1, mine: false }]);
  assert.deepEqual(v[1].reactions, [{ emoji: '👍', count: 3, mine: true }]);
  // the same events again (a replay after a reconnect): nothing moves
  assert.equal(list.applyFrame(react(4, 2, '👍', 'u-me')).changed, false);
  assert.deepEqual(list.view()[1].reactions, [{ emoji: '👍', count: 3, mine: true }]);
  // an event for a message not held changes nothing, and is no error
  assert.deepEqual(list.applyFrame(react(5, 99, '👍', 'u-other')), { kind: 'event', id: 5, target: 99, changed: false, gap: null });
  // a recall: the line in place of the message, no reactions, no content
  assert.equal(list.applyFrame({ type: 'recall', id: 6, target: 1, uid: 'u-other' }).changed, true);
  assert.equal(list.applyFrame({ type: 'recall', id: 7, target: 2, uid: 'u-me' }).changed, true);
  v = list.view();
  assert.deepEqual(v[0], { key: 'm1', domId: 'msg-1', id: 1, own: false, nickName: 'B', avatarUrl: 'https://x/media/b', initial: 'B', recalled: true, recallText: 'B recalled a message', timeLabel: v[0].timeLabel });
  assert.equal(v[1].recallText, 'You recalled a message');
  assert.equal(v[1].content, undefined);
  assert.equal(v[1].reactions, undefined);
  assert.deepEqual(ids(list), [1, 2], 'events are not messages');
  assert.equal(list.topId, 7);
  assert.equal(list.lastId, 2);
});

test('messages: event ids open no false gap; a missing id still does', function () {
  const list = createMessageList();
  list.applyFrame(msg(1));
  list.applyFrame(react(2, 1, '👍', 'u-x'));
  const r = list.applyFrame(msg(3));
  assert.equal(r.gap, null);
  assert.deepEqual(list.gaps, []);
  const e = list.applyFrame(react(5, 3, '👍', 'u-x'));
  assert.deepEqual(e.gap, { from: 4, to: 4 }, 'id 4 was not seen');
  assert.deepEqual(list.gaps, [{ from: 4, to: 4 }]);
  list.applyFrame(msg(4, 'remote', { cid: undefined }));
  assert.deepEqual(list.gaps, [], 'the hole closed');
  // a /history page with event items: markers, no gap, no message made of them
  const h = createMessageList();
  h.addLatest([msg(1), { type: 'reaction', id: 2, target: 1, emoji: '👍', uid: 'u', on: true }, msg(3), { type: 'recall', id: 4, target: 3, uid: 'u-other' }], 20);
  assert.deepEqual(ids(h), [1, 3]);
  assert.deepEqual(h.gaps, []);
  assert.equal(h.topId, 4, 'since counts the events of the page');
  assert.equal(h.view()[1].recalled, undefined, 'page events are in their targets\' state already, not applied again');
});

test('messages: recalled and reacted items from /history; events that came while away from the live end apply on return', function () {
  const list = createMessageList({ max: 3 });
  list.addLatest([msg(5), msg(6, 'remote', { recalled: true, text: undefined, content: undefined }), msg(7, 'remote', { reactions: { '😂': 4 } })], 3);
  let v = list.view();
  assert.equal(v[1].recalled, true);
  assert.equal(v[1].recallText, 'B recalled a message');
  assert.deepEqual(v[2].reactions, [{ emoji: '😂', count: 4, mine: false }]);
  list.addOlder([msg(2), msg(3), msg(4)], 3);
  assert.equal(list.atLatest, false);
  list.applyFrame(msg(8));
  assert.equal(list.applyFrame(react(9, 7, '😂', 'u-z')).detached, true);
  list.addLatest([msg(5), msg(6, 'remote', { recalled: true }), msg(7, 'remote', { reactions: { '😂': 4 } })], 3);
  v = list.view();
  assert.deepEqual(v.map(function (x) { return x.id; }), [6, 7, 8]);
  assert.deepEqual(v[1].reactions, [{ emoji: '😂', count: 5, mine: false }], 'the live event on top of the page');
  assert.equal(list.topId, 9);
});

test('messages: typing line, cleared by the typist\'s message; members from messages and presence', function () {
  let t = 0;
  const list = createMessageList({ me: { uid: 'u-me', nickName: 'Me' }, now: function () { return t; } });
  assert.equal(list.applyFrame({ type: 'typing', uid: 'u-b', nickName: 'Bob' }).kind, 'typing');
  assert.equal(list.applyFrame({ type: 'typing', uid: 'u-me', nickName: 'Me' }).kind, 'ignored', 'not oneself');
  assert.equal(list.typingLabel(), 'Bob is typing…');
  assert.equal(list.typingNext(), 5000);
  t = 1000;
  list.applyFrame({ type: 'presence', num: 3, event: 'join', uid: 'u-c', nickName: 'Mei' });
  list.applyFrame(msg(1, 'remote', { uid: 'u-b', nickName: 'Bob' }));
  assert.equal(list.typingLabel(), '', 'his message came');
  list.applyFrame({ type: 'typing', uid: 'u-c', nickName: 'Mei' });
  t = 7000;
  assert.equal(list.typingLabel(), '', 'a few seconds later');
  assert.deepEqual(list.members().map(function (m) { return m.nickName; }).sort(), ['Bob', 'Mei']);
});

test('messages: mentions are sent with the text and shown highlighted, the user\'s own mention marked', function () {
  const list = createMessageList({ newCid: cids(), me: { uid: 'u-me', nickName: 'Me' } });
  list.applyFrame(msg(1, 'remote', { uid: 'u-b', nickName: 'Bob' }));
  const p = list.addPending({ text: 'hi @Bob', mentions: ['u-b'] });
  assert.deepEqual(p.frame, { text: true, content: 'hi @Bob', cid: 'cid1', mentions: ['u-b'] });
  assert.deepEqual(list.view()[1].spans, [{ text: 'hi ' }, { text: '@Bob', at: true, me: false }]);
  assert.deepEqual(list.addPending({ text: 'plain' }).frame, { text: true, content: 'plain', cid: 'cid2' }, 'no mentions field without mentions');
  list.applyFrame(msg(2, 'remote', { uid: 'u-b', nickName: 'Bob', content: '@Me <b>look</b>', mentions: ['u-me', 7] }));
  const v = list.view().find(function (x) { return x.id === 2; });
  assert.equal(v.mentioned, true);
  assert.deepEqual(v.spans, [{ text: '@Me', at: true, me: true }, { text: ' <b>look</b>' }]);
  assert.equal(list.view()[0].mentioned, undefined);
  assert.equal(list.view()[0].spans, undefined);
});

test('messages: recall is offered on own stored messages for 2 minutes on the room clock', function () {
  const list = createMessageList({ me: { uid: 'u-me' } });
  list.applyFrame(msg(1, 'user', { uid: 'u-me', time: 1000 }));
  list.applyFrame(msg(2, 'remote', { time: 1000 }));
  assert.ok(list.recallLeft(1, 1000) > 100000);
  assert.equal(list.recallLeft(1, 1000 + 120000), 0);
  assert.equal(list.recallLeft(2, 1000), 0, 'not someone else\'s');
  assert.equal(list.recallLeft(3, 1000), 0, 'not one that is not held');
  list.applyFrame({ type: 'recall', id: 3, target: 1, uid: 'u-me' });
  assert.equal(list.recallLeft(1, 1000), 0, 'not twice');
});
