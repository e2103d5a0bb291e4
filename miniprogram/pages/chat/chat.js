// The chat room page: renders utils/chat.js (history, live messages, sending,
// replay holes, re-sends after reconnects) and keeps setData small: the list
// goes to the view by path (utils/render.js), a page holds at most MAX_HELD
// messages, and it scrolls to the newest message only when the reader is at
// the bottom (or sent something): otherwise a "new messages" button counts
// what came.
// Long press on a message opens its menu: reactions, copy, recall (own
// messages, while the 2 minutes last). Typing "@" offers the room's members;
// "X is typing…" shows above the input. While the page is shown the room
// counts as read (POST /read).
const { STATES } = require('../../utils/socket');
const { createChatRoom } = require('../../utils/chat');
const { createListRenderer } = require('../../utils/render');
const privacy = require('../../utils/privacy');
const extras = require('../../utils/extras');

const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;

const TITLE = 'Panda chat room';
const PAGE_SIZE = 20;
const MAX_HELD = 300; // messages a page holds
const NEAR_BOTTOM = 80; // px from the end that still count as "at the bottom"
const RENDER_DELAY = 30; // ms: frames of a replay are rendered together

const STATE_TEXT = {
  idle: '',
  connecting: 'Connecting…',
  open: '',
  reconnecting: 'Connection lost — reconnecting…',
  closed: 'Disconnected'
};

Page(Object.assign({
  data: {
    items: [],
    online: 0,
    connState: 'idle',
    stateText: '',
    notice: '',
    input: '',
    scrollTo: '',
    loadingHistory: false,
    noMoreHistory: false,
    me: null,
    unread: 0,
    showJump: false,
    privacyShown: false,
    privacyFor: '',
    room: '',
    typingText: '',
    menu: null, // {id, content, canRecall, emoji}
    mentionList: [], // [{uid, nickName}] while an @name is typed
    cursor: -1
  },

  onLoad(options) {
    const app = getApp();
    this.app = app;
    this.client = app.client;
    this.renderer = createListRenderer({ field: 'items' });
    this.renderTimer = null;
    this.scrollPending = false;
    this.atBottom = true;
    // the scroll view's height (measured in onReady; the window's until then)
    this.viewHeight = typeof wx.getWindowInfo === 'function' ? (wx.getWindowInfo().windowHeight || 0) : 0;
    this.unloaded = false;
    this.offline = false;
    this.shown = false;
    this.picked = []; // members picked with @ for the text in the box
    this.typingTimer = null;
    this.menuTimer = null;
    let asked = options && typeof options.room === 'string' ? options.room : '';
    try {
      asked = decodeURIComponent(asked);
    } catch (e) {
      asked = ''; // not a room name either way
    }
    const roomName = ROOM_RE.test(asked) ? asked : (this.client.config.room || 'lobby');
    this.room = createChatRoom({
      client: this.client,
      room: roomName,
      me: this.currentMe(),
      max: MAX_HELD,
      pageSize: PAGE_SIZE,
      presence: true, // joins tell who is here, for @
      onChange: (reason, info) => this.onRoomChange(reason, info)
    });
    this.setData({ room: roomName });
    this.offWake = typeof app.onWake === 'function' ? app.onWake((why) => this.onWake(why)) : null;
    this.privacyAttach();
    app.ready.then(() => this.begin());
  },

  onReady() {
    // the scroll view's height tells "at the bottom" from "reading history"
    if (typeof wx.createSelectorQuery !== 'function') return;
    wx.createSelectorQuery().select('#body').boundingClientRect((rect) => {
      if (rect && rect.height > 0) this.viewHeight = rect.height;
    }).exec();
  },

  onShow() {
    this.shown = true;
    // back from the profile page: own bubbles use the new profile
    if (this.room) {
      this.room.setMe(this.currentMe());
      this.setData({ me: this.currentMe() });
      this.room.read();
    }
  },

  onHide() {
    this.shown = false;
  },

  onUnload() {
    this.unloaded = true;
    this.shown = false;
    if (this.room) this.room.stop();
    if (this.offWake) this.offWake();
    this.privacyDetach();
    if (this.renderTimer) clearTimeout(this.renderTimer);
    if (this.typingTimer) clearTimeout(this.typingTimer);
    if (this.menuTimer) clearTimeout(this.menuTimer);
  },

  currentMe() {
    const s = this.client.session.get();
    return (s && s.userInfo) || null;
  },

  begin() {
    if (this.unloaded) return;
    this.client.api.me().catch(() => null).then(() => {
      if (this.unloaded) return null;
      this.room.setMe(this.currentMe());
      this.setData({ me: this.currentMe() });
      return this.room.start();
    });
  },

  // app events: back in the foreground (any page), network back or gone
  onWake(why) {
    if (why === 'offline') {
      this.offline = true;
      this.setData({ stateText: 'No network — waiting for it to come back' });
      return;
    }
    if (why === 'online') {
      this.offline = false;
      this.onSocketState(this.room.state, {});
    }
    this.room.reconnectNow();
  },

  onRoomChange(reason, info) {
    if (reason === 'state') {
      this.onSocketState(info.state, info.info);
      return;
    }
    if (reason === 'frame') {
      const f = info.frame || {};
      if (info.kind === 'system' || info.kind === 'presence' || info.kind === 'message') this.updateTitle();
      if (info.kind === 'typing' || info.kind === 'message') this.updateTyping();
      if (info.kind === 'typing' || (info.kind === 'event' && !info.changed && !info.gap)) return;
      if (this.shown) this.room.read();
      if (info.kind === 'error' && f.error === 'ERR_BAD_ROOM') {
        wx.showModal({ title: 'Cannot join', content: f.message || 'Bad room name', showCancel: false });
      }
      if (info.kind === 'message' || info.kind === 'detached') {
        // an own echo replaces its bubble where it is; others' messages scroll
        // into view only for a reader at the bottom
        if (!info.cid) {
          if (this.atBottom && info.kind === 'message') this.scrollPending = true;
          else this.unread = (this.unread || 0) + 1;
        }
      }
    } else if (reason === 'send') {
      // the user's own action: back to the newest messages
      this.unread = 0;
      if (!this.room.list.atLatest) this.room.jumpToLatest();
      this.scrollPending = true;
    } else if (reason === 'latest') {
      this.unread = 0;
      this.scrollPending = true;
    } else if (reason === 'older') {
      // keep the message that was on top in view
      this.scrollToId = 'msg-' + info.before;
      this.loadingDone = true;
    }
    this.render();
  },

  onSocketState(state, info) {
    let text = STATE_TEXT[state] || '';
    if (state === STATES.RECONNECTING && info && info.delay > 0) {
      text = 'Connection lost — retrying in ' + Math.ceil(info.delay / 1000) + ' s';
    }
    if (this.offline && state !== STATES.OPEN) text = 'No network — waiting for it to come back';
    this.setData({ connState: state, stateText: text });
  },

  updateTitle() {
    const n = this.room.list.online;
    if (n === this.data.online) return;
    this.setData({ online: n });
    const base = this.data.room && this.data.room !== (this.client.config.room || 'lobby') ? '#' + this.data.room : TITLE;
    wx.setNavigationBarTitle({ title: n > 0 ? base + ' (' + n + ')' : base });
  },

  // Batched: a replay after a reconnect brings many frames at once.
  render() {
    if (this.renderTimer) return;
    this.renderTimer = setTimeout(() => {
      this.renderTimer = null;
      if (!this.unloaded) this.flushRender();
    }, RENDER_DELAY);
  },

  flushRender() {
    const list = this.room.list;
    const view = list.view();
    const payloads = this.renderer.plan(view);
    const extra = {
      notice: list.notice,
      noMoreHistory: !list.hasOlder,
      unread: this.unread || 0,
      showJump: (this.unread || 0) > 0 || !list.atLatest
    };
    if (this.loadingDone) {
      extra.loadingHistory = false;
      this.loadingDone = false;
    }
    if (this.scrollToId) {
      extra.scrollTo = this.scrollToId;
      this.scrollToId = '';
    } else if (this.scrollPending && view.length && list.atLatest) {
      extra.scrollTo = view[view.length - 1].domId;
      this.atBottom = true;
    }
    this.scrollPending = false;
    // only what changed; scrolling to the same id again needs it cleared first
    if (extra.scrollTo && extra.scrollTo === this.data.scrollTo) this.setData({ scrollTo: '' });
    Object.keys(extra).forEach((k) => {
      if (k !== 'scrollTo' && this.data[k] === extra[k]) delete extra[k];
    });
    if (!payloads.length) payloads.push({});
    Object.assign(payloads[payloads.length - 1], extra);
    payloads.forEach((p) => {
      if (Object.keys(p).length) this.setData(p);
    });
  },

  onScroll(e) {
    const d = (e && e.detail) || {};
    if (this.viewHeight > 0 && typeof d.scrollHeight === 'number' && typeof d.scrollTop === 'number') {
      this.atBottom = d.scrollHeight - d.scrollTop - this.viewHeight <= NEAR_BOTTOM;
    }
    if (this.atBottom && this.room.list.atLatest && this.unread) this.clearUnread();
  },

  onScrollToLower() {
    this.atBottom = true;
    if (this.room.list.atLatest && this.unread) this.clearUnread();
  },

  clearUnread() {
    this.unread = 0;
    this.setData({ unread: 0, showJump: false });
  },

  // the "new messages" button
  onJump() {
    this.unread = 0;
    if (this.room.list.atLatest) {
      this.scrollPending = true;
      this.render();
      return;
    }
    this.room.jumpToLatest().catch(() => {
      wx.showToast({ title: 'Could not load messages', icon: 'none' });
    });
  },

  // "X is typing…": shown until it runs out (or their message comes)
  updateTyping() {
    if (this.typingTimer) clearTimeout(this.typingTimer);
    this.typingTimer = null;
    if (this.unloaded) return;
    const text = this.room.list.typingLabel();
    if (text !== this.data.typingText) this.setData({ typingText: text });
    const next = this.room.list.typingNext();
    if (next >= 0) this.typingTimer = setTimeout(() => this.updateTyping(), next + 20);
  },

  onInput(e) {
    const d = (e && e.detail) || {};
    const value = typeof d.value === 'string' ? d.value : '';
    const caret = typeof d.cursor === 'number' ? d.cursor : value.length;
    this.room.typing(value);
    const q = extras.mentionQuery(value, caret);
    const me = this.currentMe();
    const list = q ? extras.mentionCandidates(this.room.list.members(), q.query, me && me.uid) : [];
    this.mentionAt = list.length ? q : null;
    const patch = { input: value };
    if (list.length || this.data.mentionList.length) patch.mentionList = list;
    this.setData(patch);
  },

  // a tap on a name of the @ list: "@name " in place of what was typed
  onPickMention(e) {
    const i = Number(e.currentTarget.dataset.index);
    const m = this.data.mentionList[i];
    if (!m || !this.mentionAt) return;
    const r = extras.insertMention(this.data.input || '', this.mentionAt, m.nickName);
    this.picked.push({ uid: m.uid, nickName: m.nickName });
    this.mentionAt = null;
    this.setData({ input: r.text, cursor: r.caret, mentionList: [] });
  },

  onSend() {
    const text = (this.data.input || '').trim();
    if (!text) return;
    const mentions = extras.mentionsIn(text, this.picked);
    this.picked = [];
    this.mentionAt = null;
    this.setData({ input: '', mentionList: [], cursor: -1 });
    this.room.send(text, mentions);
  },

  // long press on a message: its menu (reactions, copy, recall)
  onMessageMenu(e) {
    const d = e.currentTarget.dataset || {};
    const id = Number(d.id) || 0;
    const content = typeof d.content === 'string' ? d.content : '';
    if (!id) { // still on its way: copying is all there is
      if (content) this.onCopy(e);
      return;
    }
    const left = this.room.recallLeft(id);
    if (this.menuTimer) clearTimeout(this.menuTimer);
    this.menuTimer = null;
    // the recall entry goes when the window ends with the menu open
    if (left > 0) {
      this.menuTimer = setTimeout(() => {
        this.menuTimer = null;
        if (this.data.menu && this.data.menu.id === id) this.setData({ 'menu.canRecall': false });
      }, left);
    }
    this.setData({ menu: { id: id, content: content, canRecall: left > 0, emoji: extras.EMOJI } });
  },

  onMenuClose() {
    if (this.menuTimer) clearTimeout(this.menuTimer);
    this.menuTimer = null;
    if (this.data.menu) this.setData({ menu: null });
  },

  onMenuReact(e) {
    const menu = this.data.menu;
    const emoji = e.currentTarget.dataset.emoji;
    this.onMenuClose();
    if (menu && emoji && !this.room.react(menu.id, emoji)) wx.showToast({ title: 'Not connected', icon: 'none' });
  },

  onMenuRecall() {
    const menu = this.data.menu;
    this.onMenuClose();
    if (!menu) return;
    if (this.room.recallLeft(menu.id) <= 0) {
      wx.showToast({ title: 'Too late to recall', icon: 'none' });
      return;
    }
    if (!this.room.recall(menu.id)) wx.showToast({ title: 'Not connected', icon: 'none' });
  },

  onMenuCopy() {
    const menu = this.data.menu;
    this.onMenuClose();
    if (menu && menu.content) this.onCopy({ currentTarget: { dataset: { content: menu.content } } });
  },

  // a tap on a reaction chip toggles the user's own reaction
  onChipTap(e) {
    const d = e.currentTarget.dataset || {};
    const id = Number(d.id) || 0;
    if (id && d.emoji && !this.room.react(id, d.emoji)) wx.showToast({ title: 'Not connected', icon: 'none' });
  },

  noop() {},

  // tap on a failed bubble's notice: send again or delete
  onFailedTap(e) {
    const cid = e.currentTarget.dataset.cid;
    if (!cid) return;
    wx.showActionSheet({
      itemList: ['Send again', 'Delete'],
      success: (res) => {
        if (res.tapIndex === 0) this.room.retry(cid);
        else if (res.tapIndex === 1) this.room.remove(cid);
      },
      fail: () => {}
    });
  },

  // long press on a text bubble: copy it (WeChat shows "内容已复制" itself)
  onCopy(e) {
    const text = e.currentTarget.dataset.content;
    if (typeof text !== 'string' || !text) return;
    wx.setClipboardData({
      data: text,
      fail: (err) => {
        const msg = (err && err.errMsg) || '';
        wx.showToast({ title: /privacy/i.test(msg) ? 'Agree to the privacy guide to copy' : 'Could not copy', icon: 'none' });
      }
    });
  },

  onChooseImage() {
    wx.chooseMedia({
      count: 1,
      mediaType: ['image'],
      sizeType: ['compressed'],
      sourceType: ['album', 'camera'],
      success: (res) => {
        const file = res && res.tempFiles && res.tempFiles[0];
        if (!file || !file.tempFilePath) return;
        // shown at once with its progress; the screen stays usable meanwhile
        this.room.sendImage(file.tempFilePath);
      },
      fail: (err) => {
        const msg = (err && err.errMsg) || '';
        if (/cancel/i.test(msg)) return;
        if (/privacy/i.test(msg)) {
          wx.showToast({ title: 'Agree to the privacy guide to send images', icon: 'none' });
        } else if (/auth/i.test(msg)) {
          wx.showToast({ title: 'Allow photos or camera in settings', icon: 'none' });
        } else {
          wx.showToast({ title: 'Could not open photos', icon: 'none' });
        }
      }
    });
  },

  onPreview(e) {
    const current = e.currentTarget.dataset.url;
    if (!e.currentTarget.dataset.id || !current) return; // still on its way
    const urls = this.room.list.messages.filter(function (m) { return m.gallery && m.url; }).map(function (m) { return m.url; });
    wx.previewImage({ current: current, urls: urls.indexOf(current) >= 0 ? urls : [current] });
  },

  // scrolled to the top: the page of messages before the oldest one held
  onLoadHistory() {
    if (this.data.loadingHistory || !this.room.list.hasOlder) return;
    this.setData({ loadingHistory: true });
    this.room.loadOlder().then((r) => {
      if (!r) this.setData({ loadingHistory: false, noMoreHistory: !this.room.list.hasOlder });
    }, () => {
      this.setData({ loadingHistory: false });
      wx.showToast({ title: 'Could not load history', icon: 'none' });
    });
  },

  onDismissNotice() {
    this.room.list.clearNotice();
    this.setData({ notice: '' });
  },

  onProfile() {
    wx.navigateTo({ url: '/pages/profile/profile' });
  }
}, privacy.pageMethods()));
