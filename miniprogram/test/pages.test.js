'use strict';
// The app and the pages under a fake mini-program runtime (page-shim.js).
process.env.TZ = 'UTC';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { settle } = require('./fake-wx');
const { runtime, flushRender } = require('./page-shim');
const { utf8Length } = require('../utils/render');

function params(url) {
  return Object.fromEntries(new URL(url).searchParams);
}

// a chat page loaded, its socket open and in the room
async function openChat(rt) {
  const page = rt.load('chat');
  page.onLoad();
  page.onShow();
  await settle(10);
  const t = rt.wx.sockets[rt.wx.sockets.length - 1];
  t.serverOpen();
  t.serverSend({ type: 'system', num: 3 });
  await flushRender();
  return { page: page, t: t };
}

function shown(page) {
  return page.data.items.filter(function (x) { return !x.gone; });
}

test('chat page: history, then socket with since, live frames, title, send, time separators, copy', async function () {
  const rt = runtime();
  rt.room.add({ content: 'three' });
  rt.room.add({ uid: 'u-me', nickName: 'Me', content: 'four' });
  const { page, t } = await openChat(rt);
  assert.equal(params(t.url).since, '2');
  assert.equal(params(t.url).room, 'lobby');
  assert.equal(Object.keys(params(t.url)).some(function (k) { return /skey|id/i.test(k) && k !== 'since'; }), false, 'the session is not in the URL');
  assert.deepEqual(t.header, { 'X-WX-Id': 's1', 'X-WX-Skey': 'k1' });
  const m3 = rt.room.add({ content: 'five', number: 3 });
  t.serverSend(rt.room.frame(m3));
  await flushRender();
  assert.equal(page.data.connState, 'open');
  assert.deepEqual(rt.calls.titles, ['Panda chat room (3)']);
  assert.deepEqual(shown(page).map(function (m) { return [m.id, m.own]; }), [[1, false], [2, true], [3, false]]);
  assert.equal(shown(page)[0].initial, 'B');
  assert.match(shown(page)[0].timeLabel, /^(Yesterday )?\d\d:\d\d$/, 'a time separator above the first message');
  assert.equal(shown(page)[1].timeLabel, undefined, 'none a second later');
  assert.equal(page.data.scrollTo, 'msg-3', 'at the bottom: follows new messages');

  page.onInput({ detail: { value: '  hello  ' } });
  page.onSend();
  assert.equal(page.data.input, '');
  assert.deepEqual(t.sent.map(function (f) { return f.typing ? 'typing' : f.content; }), ['typing', 'hello'], 'typing announced, then the text');
  await flushRender();
  assert.equal(shown(page)[3].pending, true);
  const mine = rt.room.add({ uid: 'u-me', nickName: 'Me', content: 'hello' });
  t.serverSend(Object.assign(rt.room.frame(mine, 'user'), { cid: t.sent[1].cid }));
  await flushRender();
  assert.deepEqual(shown(page).map(function (m) { return m.key; }), ['m1', 'm2', 'm3', 'm4']);

  // long press on a text bubble copies it
  page.onCopy({ currentTarget: { dataset: { content: 'five' } } });
  assert.deepEqual(rt.calls.clipboard, ['five']);
  // wx.setClipboardData is a privacy interface too: a refusal says why
  rt.wx.clipboardFail = 'setClipboardData:fail privacy permission is not authorized';
  page.onCopy({ currentTarget: { dataset: { content: 'five' } } });
  await settle();
  assert.match(rt.calls.toasts[rt.calls.toasts.length - 1], /privacy/i);
  page.onUnload();
  assert.equal(t.closed.by, 'client');
});

test('chat page: setData by path — one new message sends one item; a page holds MAX_HELD; no call near 1 024 kB', async function () {
  const rt = runtime();
  const long = '熊猫'.repeat(1000); // 6 000 bytes of content
  for (let i = 0; i < 20; i++) rt.room.add({ content: long });
  const { page, t } = await openChat(rt);
  assert.equal(shown(page).length, 20);
  // 400 live messages of 2 000 characters each
  for (let i = 0; i < 400; i++) t.serverSend(rt.room.frame(rt.room.add({ content: long })));
  await flushRender();
  assert.equal(shown(page).length, 300, 'the page holds MAX_HELD messages');
  assert.equal(shown(page)[299].id, 420);
  assert.equal(page.data.noMoreHistory, false, 'what was pushed out can be paged back');
  const sizes = page.setDataCalls.map(function (c) { return utf8Length(JSON.stringify(c)); });
  assert.ok(Math.max.apply(null, sizes) < 400 * 1024, 'largest setData: ' + Math.max.apply(null, sizes) + ' bytes');
  // one more message: by path only its place, the one freed at the top and
  // the new first message (which gets the time separator), not the list
  page.setDataCalls.length = 0;
  t.serverSend(rt.room.frame(rt.room.add({ content: 'short' })));
  await flushRender();
  const keys = [].concat.apply([], page.setDataCalls.map(Object.keys));
  assert.ok(keys.indexOf('items') < 0, 'the list is not sent whole: ' + keys.join(','));
  assert.ok(keys.filter(function (k) { return k.startsWith('items['); }).length <= 3, keys.join(','));
  assert.equal(shown(page)[299].content, 'short');
  page.onUnload();
});

test('chat page: no jump to the bottom while reading history; a "new messages" button instead', async function () {
  const rt = runtime();
  for (let i = 0; i < 30; i++) rt.room.add();
  const { page, t } = await openChat(rt);
  page.viewHeight = 500;
  // the reader scrolls up
  page.onScroll({ detail: { scrollTop: 100, scrollHeight: 3000 } });
  const before = page.data.scrollTo;
  t.serverSend(rt.room.frame(rt.room.add()));
  t.serverSend(rt.room.frame(rt.room.add()));
  await flushRender();
  assert.equal(page.data.scrollTo, before, 'stays where the reader is');
  assert.equal(page.data.unread, 2);
  assert.equal(page.data.showJump, true);
  page.onJump();
  await flushRender();
  assert.equal(page.data.scrollTo, 'msg-32');
  assert.equal(page.data.unread, 0);
  assert.equal(page.data.showJump, false);
  // at the bottom again: new messages are followed
  page.onScroll({ detail: { scrollTop: 2480, scrollHeight: 3000 } });
  t.serverSend(rt.room.frame(rt.room.add()));
  await flushRender();
  assert.equal(page.data.scrollTo, 'msg-33');
  // scrolling to the top pages older messages and keeps the top one in view
  page.onLoadHistory();
  assert.equal(page.data.loadingHistory, true);
  await settle(10);
  await flushRender();
  assert.equal(page.data.loadingHistory, false);
  assert.equal(page.data.scrollTo, 'msg-11');
  assert.equal(shown(page)[0].id, 1);
  assert.equal(page.data.noMoreHistory, true);
  page.onUnload();
});

test('chat page: failed bubbles — send again or delete; chooseMedia and its failures; progress without a mask', async function () {
  const rt = runtime();
  const { page, t } = await openChat(rt);
  page.setData({ input: 'refused' });
  page.onSend();
  t.serverSend({ type: 'error', error: 'ERR_RATE_LIMITED', message: 'slow down', cid: t.sent[0].cid });
  await flushRender();
  let failed = shown(page)[0];
  assert.equal(failed.failed, true);
  rt.wx.sheetAnswer = 0; // "Send again"
  page.onFailedTap({ currentTarget: { dataset: { cid: failed.cid } } });
  await settle();
  assert.deepEqual(rt.calls.sheets[0], ['Send again', 'Delete']);
  assert.equal(t.sent.length, 2);
  assert.equal(t.sent[1].cid, t.sent[0].cid);
  t.serverSend({ type: 'error', error: 'ERR_RATE_LIMITED', message: 'slow down', cid: t.sent[0].cid });
  await flushRender();
  failed = shown(page)[0];
  rt.wx.sheetAnswer = 1; // "Delete"
  page.onFailedTap({ currentTarget: { dataset: { cid: failed.cid } } });
  await settle();
  await flushRender();
  assert.equal(shown(page).length, 0);

  // an image: shown at once with its progress, no blocking loading mask
  rt.wx.holdUploads = true;
  page.onChooseImage();
  await settle();
  await flushRender();
  assert.equal(rt.calls.loading, undefined, 'no wx.showLoading mask');
  assert.equal(shown(page)[0].uploading, true);
  assert.equal(shown(page)[0].url, 'wxfile://tmp/pic.png');
  rt.wx.pendingUploads[0].progress(60);
  await flushRender();
  assert.equal(shown(page)[0].progress, 60);
  page.onPreview({ currentTarget: { dataset: { url: 'wxfile://tmp/pic.png', id: 0 } } });
  assert.equal(rt.calls.previews.length, 0, 'no preview of an image still on its way');
  rt.wx.pendingUploads[0].finish();
  await settle(10);
  assert.deepEqual(t.sent[2], { gallery: true, url: 'https://chat.example.com/media/pic', cid: t.sent[2].cid });

  // chooseMedia failures: cancel is silent, a refusal says why
  rt.wx.chooseMediaImpl = function (o) { o.fail({ errMsg: 'chooseMedia:fail cancel' }); };
  page.onChooseImage();
  assert.equal(rt.calls.toasts.length, 0);
  rt.wx.chooseMediaImpl = function (o) { o.fail({ errMsg: 'chooseMedia:fail privacy permission is not authorized' }); };
  page.onChooseImage();
  assert.match(rt.calls.toasts[0], /privacy/i);
  rt.wx.chooseMediaImpl = function (o) { o.fail({ errMsg: 'chooseMedia:fail auth deny' }); };
  page.onChooseImage();
  assert.match(rt.calls.toasts[1], /settings/i);
  page.onUnload();
});

test('app: coming back to the foreground on the profile page reconnects the chat at once; network changes', async function () {
  const rt = runtime();
  const { page, t } = await openChat(rt);
  const profile = rt.load('profile');
  profile.onLoad();
  t.serverClose(1006);
  assert.equal(page.data.connState, 'reconnecting');
  assert.equal(rt.wx.sockets.length, 1);
  rt.app.onShow(); // App onShow, whatever page is on top
  await settle(10);
  assert.equal(rt.wx.sockets.length, 2, 'no waiting out the backoff');
  const t2 = rt.wx.sockets[1];
  t2.serverOpen();
  t2.serverSend({ type: 'system', num: 1 });
  // the network goes away and comes back
  rt.wx.networkListener({ isConnected: false, networkType: 'none' });
  assert.match(page.data.stateText, /no network/i);
  t2.serverClose(1006);
  assert.match(page.data.stateText, /no network/i);
  rt.wx.networkListener({ isConnected: true, networkType: 'wifi' });
  await settle(10);
  assert.equal(rt.wx.sockets.length, 3);
  rt.wx.sockets[2].serverOpen();
  assert.equal(page.data.connState, 'open');
  assert.equal(page.data.stateText, '');
  profile.onUnload();
  page.onUnload();
  assert.equal(rt.app.wakers.size, 0, 'pages leave no listeners behind');
});

test('privacy: WeChat asks → every page shows the panel; agree answers with the agree button id; disagree', async function () {
  const rt = runtime();
  const { page } = await openChat(rt);
  const profile = rt.load('profile');
  profile.onLoad();
  await settle();
  assert.equal(profile.data.privacyShown, false);
  rt.wx.needPrivacy('wx.chooseMedia');
  assert.equal(page.data.privacyShown, true);
  assert.equal(profile.data.privacyShown, true);
  assert.deepEqual(rt.calls.privacyAnswers, [{ event: 'exposureAuthorization' }]);
  page.onOpenPrivacyContract();
  assert.equal(rt.calls.contract, 1);
  page.onAgreePrivacy(); // bindagreeprivacyauthorization of the agree button
  assert.deepEqual(rt.calls.privacyAnswers[1], { event: 'agree', buttonId: 'agree-btn' });
  assert.equal(page.data.privacyShown, false);
  assert.equal(profile.data.privacyShown, false);
  rt.wx.needPrivacy('button.chooseAvatar');
  profile.onDisagreePrivacy();
  assert.deepEqual(rt.calls.privacyAnswers[3], { event: 'disagree' });
  assert.equal(page.data.privacyShown, false);
  profile.onUnload();
  page.onUnload();
  // the panel: an agreePrivacyAuthorization button with that id, used by both pages
  const tpl = fs.readFileSync(path.join(__dirname, '..', 'pages', 'common', 'privacy.wxml'), 'utf8');
  assert.match(tpl, /<button id="agree-btn"[^>]*open-type="agreePrivacyAuthorization"[^>]*bindagreeprivacyauthorization="onAgreePrivacy"/);
  ['chat', 'profile'].forEach(function (name) {
    const wxml = fs.readFileSync(path.join(__dirname, '..', 'pages', name, name + '.wxml'), 'utf8');
    assert.match(wxml, /<import src="..\/common\/privacy.wxml" \/>/);
    assert.match(wxml, /<template is="privacy"/);
  });
});

test('profile page: consent asked up front when needed; chooseAvatar upload with progress; POST /profile', async function () {
  const rt = runtime();
  rt.wx.privacyNeeded = true;
  const page = rt.load('profile');
  page.onLoad();
  await settle(10);
  assert.equal(page.data.privacyShown, true, 'the nickname input needs consent before it is used');
  assert.equal(page.data.nickName, 'Me');
  rt.wx.holdUploads = true;
  page.onChooseAvatar({ detail: { avatarUrl: 'wxfile://tmp/avatar.jpg' } });
  assert.equal(page.data.uploading, true);
  await settle();
  rt.wx.pendingUploads[0].progress(30);
  assert.equal(page.data.progress, 30);
  rt.wx.pendingUploads[0].finish();
  await settle(10);
  assert.equal(rt.wx.uploads[0].filePath, 'wxfile://tmp/avatar.jpg');
  assert.equal(page.data.avatarUrl, 'https://chat.example.com/media/pic');
  page.onSave({ detail: { value: { nickName: ' Panda ' } } });
  await settle(10);
  const post = rt.wx.requests.find(function (r) { return r.url.endsWith('/profile'); });
  assert.deepEqual(post.data, { nickName: 'Panda', avatarUrl: 'https://chat.example.com/media/pic' });
  assert.deepEqual(rt.calls.toasts, ['Saved']);
  assert.equal(rt.client.session.get().userInfo.nickName, 'Panda');
  page.onSave({ detail: { value: { nickName: '' } } });
  assert.equal(rt.calls.toasts[1], 'Enter a nickname');
  page.onUnload();
});

test('profile page: a failed avatar upload is not shown as saved', async function () {
  const rt = runtime();
  const page = rt.load('profile');
  page.onLoad();
  await settle(10);
  assert.equal(page.data.avatarUrl, 'https://chat.example.com/media/me');
  rt.wx.uploadImpl = function () { return { statusCode: 507, data: { error: 'ERR_STORAGE_FULL', message: 'short of disk space' } }; };
  page.onChooseAvatar({ detail: { avatarUrl: 'wxfile://tmp/new.jpg' } });
  assert.equal(page.data.avatarUrl, 'wxfile://tmp/new.jpg');
  await settle(10);
  assert.equal(page.data.avatarUrl, 'https://chat.example.com/media/me', 'back to the avatar the server has');
  assert.match(page.data.avatarError, /not changed/);
  assert.deepEqual(rt.calls.toasts, ['Upload failed']);
  page.onSave({ detail: { value: { nickName: 'Panda' } } });
  await settle(10);
  const post = rt.wx.requests.find(function (r) { return r.url.endsWith('/profile'); });
  assert.deepEqual(post.data, { nickName: 'Panda' }, 'no avatar posted');
  assert.equal(rt.calls.toasts[1], 'Nickname saved', 'not "Saved" as if the avatar were');
  page.onUnload();
});

// ------------------------------------------------------------ recall, reactions, typing, mentions, unread

const extras = require('../utils/extras');

function sleep(ms) {
  return new Promise(function (r) { setTimeout(r, ms); });
}

test('chat page: long press menu — reactions, copy, recall of own messages within the window; chips toggle; the recall line in place', async function () {
  const rt = runtime();
  rt.room.add({ uid: 'u-me', nickName: 'Me', content: 'mine', time: Date.now() - 1000 });
  rt.room.add({ content: 'theirs' });
  const { page, t } = await openChat(rt);
  const menuOn = function (id, content) { page.onMessageMenu({ currentTarget: { dataset: { id: id, content: content } } }); };

  menuOn(2, 'theirs');
  assert.deepEqual(page.data.menu, { id: 2, content: 'theirs', canRecall: false, emoji: extras.EMOJI }, 'no recall of someone else\'s message');
  page.onMenuReact({ currentTarget: { dataset: { emoji: '👍' } } });
  assert.equal(page.data.menu, null);
  assert.deepEqual(t.sent[t.sent.length - 1], { react: 2, emoji: '👍' });
  rt.room.messages.push({ type: 'reaction', id: 3, target: 2, emoji: '👍', uid: 'u-me', on: true });
  t.serverSend(rt.room.messages[2]);
  page.setDataCalls.length = 0;
  await flushRender();
  assert.deepEqual(shown(page)[1].reactions, [{ emoji: '👍', count: 1, mine: true }]);
  assert.deepEqual([].concat.apply([], page.setDataCalls.map(Object.keys)).filter(function (k) { return k.startsWith('items'); }), ['items[1]'], 'only that message is sent again');
  // a tap on the chip takes the reaction back
  page.onChipTap({ currentTarget: { dataset: { id: 2, emoji: '👍' } } });
  assert.deepEqual(t.sent[t.sent.length - 1], { react: 2, emoji: '👍' });
  t.serverSend({ type: 'reaction', id: 4, target: 2, emoji: '👍', uid: 'u-me', on: false });
  await flushRender();
  assert.equal(shown(page)[1].reactions, undefined);

  // copy from the menu
  menuOn(2, 'theirs');
  page.onMenuCopy();
  assert.deepEqual(rt.calls.clipboard, ['theirs']);
  // an own message: recall
  menuOn(1, 'mine');
  assert.equal(page.data.menu.canRecall, true);
  page.onMenuRecall();
  assert.deepEqual(t.sent[t.sent.length - 1], { recall: 1 });
  t.serverSend({ type: 'recall', id: 5, target: 1, uid: 'u-me' });
  await flushRender();
  assert.equal(shown(page)[0].recalled, true);
  assert.equal(shown(page)[0].recallText, 'You recalled a message');
  assert.equal(shown(page)[0].content, undefined, 'the text is gone');
  // the server refuses a recall: the notice says why
  t.serverSend({ type: 'error', error: 'ERR_NOT_ALLOWED', message: 'too late' });
  await flushRender();
  assert.match(page.data.notice, /recalled, within 2 minutes/);

  // the window ends while the menu is open: the entry goes
  const old = Date.now() - (extras.RECALL_WINDOW - extras.RECALL_MARGIN) + 150;
  t.serverSend(Object.assign(rt.room.frame(rt.room.add({ uid: 'u-me', nickName: 'Me', content: 'late', time: old, id: 6 }), 'user')));
  await flushRender();
  menuOn(6, 'late');
  assert.equal(page.data.menu.canRecall, true);
  await sleep(250);
  assert.equal(page.data.menu.canRecall, false);
  const before = t.sent.length;
  page.onMenuRecall();
  assert.equal(t.sent.length, before, 'nothing sent');
  assert.equal(rt.calls.toasts[rt.calls.toasts.length - 1], 'Too late to recall');

  // a bubble still on its way: long press copies, there is no menu
  page.setData({ input: 'on its way' });
  t.failSends = false;
  page.onMessageMenu({ currentTarget: { dataset: { id: 0, content: 'on its way' } } });
  assert.equal(page.data.menu, null);
  assert.equal(rt.calls.clipboard[rt.calls.clipboard.length - 1], 'on its way');
  page.onUnload();

  // every user string of the template goes through {{ }} text, never rich-text
  const wxml = fs.readFileSync(path.join(__dirname, '..', 'pages', 'chat', 'chat.wxml'), 'utf8');
  assert.doesNotMatch(wxml, /rich-text|<web-view/);
});

test('chat page: "X is typing…" until their message; @ picker from the room\'s members sends mentions; the user\'s mention highlighted', async function () {
  const rt = runtime();
  rt.room.add({ uid: 'u-c', nickName: 'Mei' });
  rt.room.add({ uid: 'u-b', nickName: 'Bob' });
  const { page, t } = await openChat(rt);
  assert.equal(rt.wx.sockets[0].url.indexOf('presence=1') > 0, true, 'joins name the room\'s members');
  t.serverSend({ type: 'presence', num: 4, event: 'join', uid: 'u-d', nickName: 'Carol' });
  t.serverSend({ type: 'typing', uid: 'u-b', nickName: 'Bob' });
  assert.equal(page.data.typingText, 'Bob is typing…');
  t.serverSend(rt.room.frame(rt.room.add({ uid: 'u-b', nickName: 'Bob', content: 'done typing' })));
  assert.equal(page.data.typingText, '', 'his message came');

  page.onInput({ detail: { value: 'hi @', cursor: 4 } });
  assert.deepEqual(page.data.mentionList.map(function (m) { return m.nickName; }).sort(), ['Bob', 'Carol', 'Mei']);
  page.onInput({ detail: { value: 'hi @me', cursor: 6 } });
  assert.deepEqual(page.data.mentionList, [{ uid: 'u-c', nickName: 'Mei' }], 'the user is not offered');
  page.onPickMention({ currentTarget: { dataset: { index: 0 } } });
  assert.equal(page.data.input, 'hi @Mei ');
  assert.equal(page.data.cursor, 8);
  assert.deepEqual(page.data.mentionList, []);
  page.onInput({ detail: { value: 'hi @Mei how are you', cursor: 19 } });
  assert.deepEqual(page.data.mentionList, []);
  page.onSend();
  const sent = t.sent.filter(function (f) { return f.text; });
  assert.deepEqual(sent[sent.length - 1], { text: true, content: 'hi @Mei how are you', cid: sent[sent.length - 1].cid, mentions: ['u-c'] });

  t.serverSend(rt.room.frame(rt.room.add({ uid: 'u-b', nickName: 'Bob', content: '@Me <img src=x onerror=alert(1)>', mentions: ['u-me'] })));
  await flushRender();
  const v = shown(page).find(function (x) { return x.content && x.content.indexOf('@Me') === 0; });
  assert.equal(v.mentioned, true);
  assert.deepEqual(v.spans, [{ text: '@Me', at: true, me: true }, { text: ' <img src=x onerror=alert(1)>' }], 'markup stays text');
  page.onUnload();
});

test('room list: unread badges from GET /rooms; the chat posts /read while shown; a room read here shows no badge', async function () {
  const rt = runtime();
  rt.wx.roomsAnswer = [{ room: 'lobby', lastId: 5, readId: 2 }, { room: 'garden', lastId: 9, readId: 9 }, { room: 'tea', lastId: 3, readId: 1 }, { room: 'busy', lastId: 500, readId: 1 }];
  const rooms = rt.load('rooms');
  rooms.onLoad();
  rooms.onShow();
  await settle(10);
  assert.deepEqual(rooms.data.rooms, [{ room: 'lobby', badge: '3' }, { room: 'garden', badge: '' }, { room: 'tea', badge: '2' }, { room: 'busy', badge: '99+' }]);
  rooms.onOpen({ currentTarget: { dataset: { room: 'tea' } } });
  assert.equal(rt.calls.navigate[rt.calls.navigate.length - 1], '/pages/chat/chat?room=tea');
  rooms.onOpen({ currentTarget: { dataset: { room: 'bad room' } } });
  assert.equal(rt.calls.navigate.length, 1);

  // a bad room in the page's query: the default room
  const odd = rt.load('chat');
  odd.onLoad({ room: '%E0%A4%A' });
  assert.equal(odd.data.room, 'lobby');
  odd.onUnload();

  rt.room.add();
  rt.room.add();
  const chat = rt.load('chat');
  chat.onLoad({ room: 'tea' });
  chat.onShow();
  await settle(10);
  const t = rt.wx.sockets[0];
  assert.equal(new URL(t.url).searchParams.get('room'), 'tea');
  t.serverOpen();
  t.serverSend({ type: 'system', num: 2 });
  await settle(5);
  assert.deepEqual(rt.calls.reads, [{ room: 'tea', id: 2 }], 'read up to the newest id shown');
  assert.equal(rt.calls.titles[rt.calls.titles.length - 1], '#tea (2)');
  t.serverSend(rt.room.frame(rt.room.add()));
  await sleep(1100);
  assert.deepEqual(rt.calls.reads[1], { room: 'tea', id: 3 }, 'at most once a second');
  chat.onHide();
  t.serverSend({ type: 'reaction', id: 4, target: 3, emoji: '👍', uid: 'u-b', on: true });
  await sleep(1100);
  assert.equal(rt.calls.reads.length, 2, 'not while the page is hidden');
  chat.onUnload();

  // back on the list: the server's answer is older than the read, the badge stays away
  rooms.onShow();
  await settle(10);
  assert.deepEqual(rooms.data.rooms.map(function (r) { return r.room + ':' + r.badge; }), ['lobby:3', 'tea:', 'garden:', 'busy:99+'], 'tea opened here: listed after the default room');
  // joining a room by name
  rooms.onNameInput({ detail: { value: ' #new-room ' } });
  rooms.onJoin();
  assert.equal(rt.calls.navigate[rt.calls.navigate.length - 1], '/pages/chat/chat?room=new-room');
  rooms.onNameInput({ detail: { value: 'no spaces' } });
  rooms.onJoin();
  assert.match(rt.calls.toasts[rt.calls.toasts.length - 1], /Letters/);
  // GET /rooms fails: the badges stay, the page says so
  rt.wx.roomsAnswer = null;
  rooms.onShow();
  await settle(10);
  assert.match(rooms.data.error, /Could not load/);
  assert.equal(rooms.data.rooms.find(function (r) { return r.room === 'lobby'; }).badge, '3');
  rooms.onUnload();
});
