// The chat room: history, live messages, text and image sending.
const { STATES } = require('../../utils/socket');

const TITLE = 'Panda chat room';
const PAGE_SIZE = 20;

const STATE_TEXT = {
  idle: '',
  connecting: 'Connecting…',
  open: '',
  reconnecting: 'Connection lost — reconnecting…',
  closed: 'Disconnected'
};

function initial(name) {
  return name ? String(name).slice(0, 1).toUpperCase() : '?';
}

function viewItems(list) {
  return list.view().map(function (m) {
    return Object.assign({}, m, { initial: initial(m.nickName) });
  });
}

Page({
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
    me: null
  },

  onLoad() {
    const app = getApp();
    this.client = app.client;
    this.room = this.client.config.room || 'lobby';
    this.list = this.client.messages({ me: this.currentMe(), max: 2000 });
    this.socket = null;
    this.renderTimer = null;
    this.unloaded = false;
    app.ready.then(() => this.begin());
  },

  onShow() {
    // back from the profile page: own pending bubbles use the new profile
    if (this.list) {
      this.list.setMe(this.currentMe());
      this.setData({ me: this.currentMe() });
      this.render();
    }
    // back in the foreground: do not wait for the rest of the backoff
    if (this.socket && this.socket.state === STATES.RECONNECTING) this.socket.reconnectNow();
  },

  onUnload() {
    this.unloaded = true;
    if (this.socket) this.socket.stop();
    if (this.renderTimer) clearTimeout(this.renderTimer);
  },

  currentMe() {
    const s = this.client.session.get();
    return (s && s.userInfo) || null;
  },

  // Latest history page first, then the socket with since=<last id>, so that
  // nothing between the two is lost and nothing is shown twice.
  begin() {
    if (this.unloaded) return;
    this.client.api.me().catch(() => null).then(() => {
      this.list.setMe(this.currentMe());
      this.setData({ me: this.currentMe() });
      return this.client.api.history({ room: this.room, limit: PAGE_SIZE });
    }).then((page) => {
      this.list.addHistory(page);
      if (page.length < PAGE_SIZE) this.setData({ noMoreHistory: true });
      return typeof this.list.lastId === 'number' ? this.list.lastId : 0;
    }, (err) => {
      console.warn('history failed', err && err.message);
      return undefined;
    }).then((since) => {
      if (this.unloaded) return;
      this.render(true);
      this.socket = this.client.socket({
        room: this.room,
        since: since,
        onFrame: (f) => this.onFrame(f),
        onState: (s, info) => this.onSocketState(s, info)
      });
      this.socket.start();
    });
  },

  onFrame(frame) {
    const r = this.list.applyFrame(frame);
    if (r.kind === 'system' || r.kind === 'presence' || r.kind === 'message') this.updateTitle();
    if (r.kind === 'error' && frame.error === 'ERR_BAD_ROOM') {
      wx.showModal({ title: 'Cannot join', content: frame.message || 'Bad room name', showCancel: false });
    }
    this.render(r.kind === 'message' || r.kind === 'error');
  },

  onSocketState(state, info) {
    let text = STATE_TEXT[state] || '';
    if (state === STATES.RECONNECTING && info && info.delay > 0) {
      text = 'Connection lost — retrying in ' + Math.ceil(info.delay / 1000) + ' s';
    }
    this.setData({ connState: state, stateText: text });
  },

  updateTitle() {
    const n = this.list.online;
    if (n === this.data.online) return;
    this.setData({ online: n });
    wx.setNavigationBarTitle({ title: n > 0 ? TITLE + ' (' + n + ')' : TITLE });
  },

  // Batch setData: a replay after a reconnect may bring many frames at once.
  render(scrollToEnd) {
    if (scrollToEnd) this.scrollPending = true;
    if (this.renderTimer) return;
    this.renderTimer = setTimeout(() => {
      this.renderTimer = null;
      if (this.unloaded) return;
      const items = viewItems(this.list);
      const data = { items: items, notice: this.list.notice };
      if (this.scrollPending && items.length) data.scrollTo = items[items.length - 1].domId;
      this.scrollPending = false;
      this.setData(data);
    }, 30);
  },

  onInput(e) {
    this.setData({ input: e.detail.value });
  },

  onSend() {
    const text = (this.data.input || '').trim();
    if (!text) return;
    this.setData({ input: '' });
    this.sendPending(this.list.addPending({ text: text }));
  },

  sendPending(p) {
    if (!this.socket || !this.socket.send(p.frame)) this.list.failPending(p.cid, 'ERR_NOT_CONNECTED');
    this.render(true);
  },

  // tap on a failed bubble's notice: send it again
  onRetry(e) {
    const cid = e.currentTarget.dataset.cid;
    const frame = this.list.retryPending(cid);
    if (frame) this.sendPending({ cid: cid, frame: frame });
  },

  onChooseImage() {
    wx.chooseMedia({
      count: 1,
      mediaType: ['image'],
      sizeType: ['compressed'],
      sourceType: ['album', 'camera'],
      success: (res) => {
        const file = res.tempFiles && res.tempFiles[0];
        if (!file) return;
        wx.showLoading({ title: 'Uploading…', mask: true });
        this.client.api.upload(file.tempFilePath).then((media) => {
          wx.hideLoading();
          this.sendPending(this.list.addPending({ url: media.url }));
        }, (err) => {
          wx.hideLoading();
          wx.showToast({ title: (err && err.status === 413) ? 'Image too large' : 'Upload failed', icon: 'none' });
        });
      }
    });
  },

  onPreview(e) {
    const current = e.currentTarget.dataset.url;
    const urls = this.data.items.filter(function (m) { return m.gallery && m.url; }).map(function (m) { return m.url; });
    wx.previewImage({ current: current, urls: urls.length ? urls : [current] });
  },

  // scrolled to the top: the page of messages before the oldest one shown
  onLoadHistory() {
    if (this.data.loadingHistory || this.data.noMoreHistory) return;
    const before = this.list.firstId;
    if (typeof before !== 'number') return;
    this.setData({ loadingHistory: true });
    this.client.api.history({ room: this.room, before: before, limit: PAGE_SIZE }).then((page) => {
      this.list.addHistory(page);
      const items = viewItems(this.list);
      // keep the message that was on top in view
      this.setData({
        items: items,
        loadingHistory: false,
        noMoreHistory: page.length < PAGE_SIZE,
        scrollTo: 'msg-' + before
      });
    }, () => {
      this.setData({ loadingHistory: false });
      wx.showToast({ title: 'Could not load history', icon: 'none' });
    });
  },

  onDismissNotice() {
    this.list.clearNotice();
    this.setData({ notice: '' });
  },

  onProfile() {
    wx.navigateTo({ url: '/pages/profile/profile' });
  }
});
