'use strict';
// utils/extras.js: the pure logic of recall, reactions, typing, mentions and
// unread counts that the browser client shares (web/static/extras.js).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const X = require('../utils/extras');

const ME = 'u-me';

function reaction(id, target, emoji, uid, on) {
  return { type: 'reaction', id: id, target: target, emoji: emoji, uid: uid, on: on };
}

test('extras: the browser client runs the same file', function () {
  const web = path.join(__dirname, '..', '..', 'web', 'static', 'extras.js');
  assert.equal(fs.readFileSync(web, 'utf8'), fs.readFileSync(path.join(__dirname, '..', 'utils', 'extras.js'), 'utf8'),
    'web/static/extras.js and miniprogram/utils/extras.js differ: copy one over the other');
});

test('extras: events and messages told apart', function () {
  assert.equal(X.isEvent({ type: 'recall', id: 5, target: 3 }), true);
  assert.equal(X.isEvent(reaction(6, 3, '👍', 'u', true)), true);
  assert.equal(X.isEvent({ type: 'typing', uid: 'u' }), false, 'typing has no id: not stored');
  assert.equal(X.isEvent({ type: 'recall', id: 0 }), false);
  assert.equal(X.isEvent(null), false);
  assert.equal(X.isMessage({ type: 'remote', id: 1, text: true, content: 'x' }), true);
  assert.equal(X.isMessage({ id: 2, recalled: true, uid: 'u' }), true, 'a recalled history item without type');
  assert.equal(X.isMessage({ type: 'recall', id: 3 }), false);
  assert.equal(X.isMessage({ type: 'user', id: 1.5 }), false);
});

test('extras: reactions from /history, then events: counts follow who reacts, replays change nothing', function () {
  const x = X.extrasOf({ id: 3, reactions: { '👍': 2, '🎉': 1, bad: 'x', '': 4, '😢': 0 } }, ME);
  assert.deepEqual(X.chips(x), [{ emoji: '👍', count: 2, mine: false }, { emoji: '🎉', count: 1, mine: false }], 'bad counts and empty emoji left out');
  assert.equal(X.applyEvent(x, reaction(10, 3, '👍', ME, true), ME), true);
  assert.deepEqual(X.chips(x)[0], { emoji: '👍', count: 3, mine: true });
  assert.equal(X.applyEvent(x, reaction(10, 3, '👍', ME, true), ME), false, 'the same event again (replay)');
  assert.equal(X.applyEvent(x, reaction(9, 3, '👍', 'u-b', true), ME), false, 'an older event');
  assert.equal(X.chips(x)[0].count, 3);
  // a second "on" for the same person (a stale snapshot) is not counted twice
  assert.equal(X.applyEvent(x, reaction(11, 3, '👍', ME, true), ME), false);
  assert.equal(X.chips(x)[0].count, 3);
  // off: down, and the emoji goes when nobody is left
  X.applyEvent(x, reaction(12, 3, '🎉', 'u-b', false), ME);
  assert.deepEqual(X.chips(x).map(function (c) { return c.emoji; }), ['👍']);
  X.applyEvent(x, reaction(13, 3, '👍', ME, false), ME);
  assert.deepEqual(X.chips(x)[0], { emoji: '👍', count: 2, mine: false });
  // taking away a reaction that is not there changes nothing
  assert.equal(X.applyEvent(x, reaction(14, 3, '😮', 'u-c', false), ME), false);
  // a new emoji starts at 1
  X.applyEvent(x, reaction(15, 3, '😮', 'u-c', true), ME);
  assert.deepEqual(X.chips(x).map(function (c) { return [c.emoji, c.count]; }), [['👍', 2], ['😮', 1]]);
  // bad events are ignored
  assert.equal(X.applyEvent(x, reaction(16, 3, '', 'u-c', true), ME), false);
  assert.equal(X.applyEvent(x, reaction(17, 3, '👍', '', true), ME), false);
  assert.equal(X.applyEvent(x, reaction(18, 3, 'x'.repeat(40), 'u', true), ME), false);
});

test('extras: own reactions named by the server mark the chip as mine', function () {
  const a = X.extrasOf({ id: 1, reactions: { '👍': 3 }, myReactions: ['👍'] }, ME);
  assert.deepEqual(X.chips(a), [{ emoji: '👍', count: 3, mine: true }]);
  X.applyEvent(a, reaction(5, 1, '👍', ME, false), ME);
  assert.deepEqual(X.chips(a), [{ emoji: '👍', count: 2, mine: false }]);
  const b = X.extrasOf({ id: 1, reactions: { '🎉': { count: 2, mine: true, uids: ['u-b', ME] } } }, ME);
  assert.deepEqual(X.chips(b), [{ emoji: '🎉', count: 2, mine: true }]);
  assert.equal(X.applyEvent(b, reaction(6, 1, '🎉', 'u-b', true), ME), false, 'u-b is known to react already');
  // a page read when the room's last id was 9 holds every event up to 9
  const c = X.extrasOf({ id: 1, reactions: { '👍': 2 } }, ME, 9);
  assert.equal(X.applyEvent(c, reaction(8, 1, '👍', 'u-c', true), ME), false, 'counted in the page already');
  assert.equal(X.applyEvent(c, reaction(10, 1, '👍', 'u-c', true), ME), true);
  assert.deepEqual(X.chips(c), [{ emoji: '👍', count: 3, mine: false }]);
});

test('extras: recall clears reactions and is final; later reactions are ignored', function () {
  const x = X.extrasOf({ id: 2, reactions: { '👍': 1 } }, ME);
  assert.equal(X.applyEvent(x, { type: 'recall', id: 7, target: 2, uid: 'u-b' }, ME), true);
  assert.equal(x.recalled, true);
  assert.deepEqual(X.chips(x), []);
  assert.equal(X.applyEvent(x, { type: 'recall', id: 8, target: 2, uid: 'u-b' }, ME), false);
  assert.equal(X.applyEvent(x, reaction(9, 2, '👍', 'u-c', true), ME), false);
  const h = X.extrasOf({ id: 2, recalled: true, reactions: { '👍': 1 } }, ME);
  assert.equal(h.recalled, true);
  assert.deepEqual(X.chips(h), [], 'a recalled history item shows no reactions');
  assert.equal(X.recallLabel('Bob', false), 'Bob recalled a message');
  assert.equal(X.recallLabel('', false), 'Someone recalled a message');
  assert.equal(X.recallLabel('Me', true), 'You recalled a message');
});

test('extras: recall is offered on own stored messages within the window, on the room clock', function () {
  const t = 1000000;
  const mine = { id: 4, type: 'user', uid: ME, time: t };
  assert.equal(X.recallLeft(mine, ME, t), X.RECALL_WINDOW - X.RECALL_MARGIN);
  assert.equal(X.recallLeft(mine, ME, t + X.RECALL_WINDOW - X.RECALL_MARGIN), 0, 'a little before the server stops accepting');
  assert.equal(X.recallLeft({ id: 4, uid: ME, time: t }, ME, t) > 0, true, 'own by uid (a history item)');
  assert.equal(X.recallLeft({ id: 4, type: 'remote', uid: 'u-b', time: t }, ME, t), 0, 'someone else\'s');
  assert.equal(X.recallLeft({ id: 0, type: 'user', uid: ME, time: t }, ME, t), 0, 'not stored yet');
  assert.equal(X.recallLeft(mine, ME, t, { recalled: true }), 0, 'recalled already');
  // the clock: the largest (frame time − arrival) is the offset
  let local = 5000;
  const clock = X.createClock(function () { return local; });
  assert.equal(clock.now(), 5000);
  clock.observe(65000); // the room's clock is about a minute ahead
  local = 5100;
  clock.observe(65050); // this one took longer on the way
  assert.equal(clock.offset, 60000);
  assert.equal(clock.now(), 65100);
  clock.observe('x');
  assert.equal(clock.offset, 60000);
});

test('extras: typing frames at most every 3 s while there is text; others shown for a few seconds', function () {
  const s = X.createTypingSender();
  assert.equal(s.shouldSend(0, ''), false, 'an empty box is not typing');
  assert.equal(s.shouldSend(0, '   '), false);
  assert.equal(s.shouldSend(100, 'h'), true);
  assert.equal(s.shouldSend(1000, 'he'), false);
  assert.equal(s.shouldSend(3099, 'hel'), false);
  assert.equal(s.shouldSend(3100, 'hell'), true);
  assert.equal(s.shouldSend(6099, 'x'), false);
  assert.equal(s.shouldSend(6100, 'x'), true);

  const ty = X.createTypists(5000);
  assert.equal(ty.label(0), '');
  assert.equal(ty.nextChange(0), -1);
  assert.equal(ty.add('u-b', 'Bob', 0), true);
  assert.equal(ty.add('u-b', 'Bob', 1000), false, 'still typing: no change');
  assert.equal(ty.label(1000), 'Bob is typing…');
  ty.add('u-c', 'Mei', 2000);
  assert.equal(ty.label(2000), 'Bob and Mei are typing…');
  assert.equal(ty.nextChange(2000), 4000, 'Bob runs out at 6000');
  ty.add('u-d', 'Carol', 2500);
  assert.equal(ty.label(2500), 'Several people are typing…');
  assert.equal(ty.label(6500), 'Mei and Carol are typing…');
  ty.remove('u-c'); // her message came
  assert.equal(ty.label(6500), 'Carol is typing…');
  assert.equal(ty.label(7500), '');
  assert.equal(ty.add('', 'x', 0), false);
  ty.add('u-e', '', 0);
  assert.equal(ty.label(1), 'Someone is typing…');
});

test('extras: @ query at the caret, candidates, insertion, mentions in the text', function () {
  assert.equal(X.mentionQuery('hello', 5), null);
  assert.deepEqual(X.mentionQuery('@', 1), { start: 0, end: 1, query: '' });
  assert.deepEqual(X.mentionQuery('hi @Bo', 6), { start: 3, end: 6, query: 'Bo' });
  assert.deepEqual(X.mentionQuery('hi @Bamboo F', 12), { start: 3, end: 12, query: 'Bamboo F' }, 'names with a space');
  assert.equal(X.mentionQuery('mail a@b', 8), null, 'an @ inside a word is not a mention');
  assert.equal(X.mentionQuery('hi @ Bo', 7), null);
  assert.equal(X.mentionQuery('@Bo\nx', 5), null);
  assert.deepEqual(X.mentionQuery('@Bo and more', 3), { start: 0, end: 3, query: 'Bo' }, 'only what is before the caret');

  const members = X.createMembers();
  members.see('u-b', 'Bob');
  members.see('u-c', 'Mei');
  members.see('u-d', 'Bamboo Fan');
  members.see(ME, 'Me');
  members.see('u-x', '   ');
  members.see('u-b', 'Bobby'); // a new name
  assert.equal(members.size, 4);
  assert.equal(members.name('u-b'), 'Bobby');
  assert.deepEqual(X.mentionCandidates(members.list(), '', ME).map(function (m) { return m.nickName; }), ['Bobby', 'Bamboo Fan', 'Mei']);
  assert.deepEqual(X.mentionCandidates(members.list(), 'b', ME).map(function (m) { return m.uid; }), ['u-b', 'u-d']);
  assert.deepEqual(X.mentionCandidates(members.list(), 'fan', ME).map(function (m) { return m.uid; }), ['u-d'], 'contains, after starts-with');
  assert.deepEqual(X.mentionCandidates(members.list(), 'me', ME).map(function (m) { return m.uid; }), ['u-c'], 'Mei, not oneself');

  const q = X.mentionQuery('hey @ba how', 7);
  assert.deepEqual(X.insertMention('hey @ba how', q, 'Bamboo Fan'), { text: 'hey @Bamboo Fan how', caret: 16 });
  assert.deepEqual(X.insertMention('@', X.mentionQuery('@', 1), 'Mei'), { text: '@Mei ', caret: 5 });

  const picked = [{ uid: 'u-d', nickName: 'Bamboo Fan' }, { uid: 'u-c', nickName: 'Mei' }, { uid: 'u-d', nickName: 'Bamboo Fan' }];
  assert.deepEqual(X.mentionsIn('hey @Bamboo Fan and @Mei', picked), ['u-d', 'u-c']);
  assert.deepEqual(X.mentionsIn('hey @Bamboo and Mei', picked), [], 'deleted or broken mentions are not sent');
  const many = [];
  for (let i = 0; i < 30; i++) many.push({ uid: 'u' + i, nickName: 'n' + i });
  assert.equal(X.mentionsIn(many.map(function (m) { return '@' + m.nickName; }).join(' '), many).length, X.MAX_MENTIONS);
});

test('extras: mention spans for highlighting, the user\'s own mention marked', function () {
  const names = { 'u-b': 'Bob', 'u-bb': 'Bob Jr', [ME]: 'Me' };
  const nameOf = function (u) { return names[u]; };
  assert.deepEqual(X.mentionSpans('hi @Bob Jr and @Me!', ['u-b', 'u-bb', ME], nameOf, ME), [
    { text: 'hi ' }, { text: '@Bob Jr', uid: 'u-bb', me: false }, { text: ' and ' }, { text: '@Me', uid: ME, me: true }, { text: '!' }
  ]);
  assert.deepEqual(X.mentionSpans('@Bob', ['u-b'], nameOf, ME), [{ text: '@Bob', uid: 'u-b', me: false }]);
  assert.deepEqual(X.mentionSpans('@Carol <b>x</b>', ['u-z'], nameOf, ME), [{ text: '@Carol <b>x</b>' }], 'unknown names stay text');
  assert.deepEqual(X.mentionSpans('', [], nameOf, ME), [{ text: '' }]);
  assert.deepEqual(X.mentionSpans('x', 'bad', nameOf, ME), [{ text: 'x' }]);
  assert.equal(X.mentionsMe({ mentions: ['u-b', ME] }, ME), true);
  assert.equal(X.mentionsMe({ mentions: ['u-b'] }, ME), false);
  assert.equal(X.mentionsMe({}, ME), false);
});

test('extras: unread counts from GET /rooms, what was read here, read positions to post', function () {
  assert.deepEqual(X.parseRooms([{ room: 'lobby', lastId: 10, readId: 7 }, { room: 'bad room', lastId: 1 }, { room: 'x', lastId: 5, readId: 1, unread: 2, mentions: 1 }, null]),
    [{ room: 'lobby', lastId: 10, readId: 7, unread: 3, mentions: 0 }, { room: 'x', lastId: 5, readId: 1, unread: 2, mentions: 1 }]);
  assert.deepEqual(X.parseRooms({ rooms: [{ room: 'a', lastId: 3 }] }), [{ room: 'a', lastId: 3, readId: 0, unread: 3, mentions: 0 }]);
  assert.deepEqual(X.parseRooms('nope'), []);

  const u = X.createUnread();
  assert.deepEqual(u.update([{ room: 'lobby', lastId: 10, readId: 7, unread: 3, mentions: 1 }, { room: 'b', lastId: 4, readId: 4 }, { room: 'c', lastId: 9, readId: 2, unread: 5 }]), ['lobby', 'b', 'c']);
  assert.equal(u.mentions('lobby'), 1);
  assert.equal(u.count('lobby'), 3);
  assert.equal(u.total(), 8);
  assert.equal(u.total('c'), 3);
  u.read('lobby', 10);
  assert.equal(u.count('lobby'), 0, 'read here up to its last id');
  assert.equal(u.mentions('lobby'), 0);
  u.read('c', 7);
  assert.equal(u.count('c'), 2, 'the server said 5 unread of 7 ids; 2 ids remain');
  // a GET /rooms answer from before the POST /read landed does not bring the badge back
  u.update([{ room: 'lobby', lastId: 10, readId: 7 }, { room: 'c', lastId: 9, readId: 2, unread: 5 }]);
  assert.equal(u.count('lobby'), 0);
  assert.equal(u.count('nowhere'), 0);
  u.update([{ room: 'lobby', lastId: 12, readId: 7 }]);
  assert.equal(u.count('lobby'), 2, 'new messages since');
  assert.equal(X.badge(0), '');
  assert.equal(X.badge(7), '7');
  assert.equal(X.badge(140), '99+');

  const m = X.createReadMarker(1000);
  assert.equal(m.take(0), 0, 'nothing seen');
  m.note(5);
  assert.equal(m.take(0), 5);
  m.note(6);
  m.note(4);
  assert.equal(m.take(500), 0, 'one post per second');
  assert.equal(m.wait(500), 500);
  assert.equal(m.take(1000), 6);
  assert.equal(m.wait(1000), -1, 'nothing new');
  m.failed(6);
  assert.equal(m.take(1001), 6, 'a failed post is due again');
});
