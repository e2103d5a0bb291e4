// The room list, the first page: the rooms the user is in (GET /rooms) and
// the ones opened here before, each with its unread count; a tap opens the
// chat of that room. Unread counts come from the server's read positions and
// from what the chat pages have read since (client.unread), so a room read a
// moment ago shows no badge even before the server's answer says so.
const extras = require('../../utils/extras');
const privacy = require('../../utils/privacy');

const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const RECENT_KEY = 'panda_rooms';
const RECENT_MAX = 8;

Page(Object.assign({
  data: {
    rooms: [], // [{room, badge}]
    name: '',
    error: '',
    privacyShown: false,
    privacyFor: ''
  },

  onLoad() {
    this.app = getApp();
    this.client = this.app.client;
    this.privacyAttach();
    this.render();
  },

  onShow() {
    this.render();
    this.app.ready.then(() => this.refresh());
  },

  onUnload() {
    this.privacyDetach();
  },

  onPullDownRefresh() {
    this.refresh().then(() => wx.stopPullDownRefresh && wx.stopPullDownRefresh());
  },

  recent() {
    let l;
    try {
      l = wx.getStorageSync(RECENT_KEY);
    } catch (e) {
      l = null;
    }
    return Array.isArray(l) ? l.filter(function (r) { return typeof r === 'string' && ROOM_RE.test(r); }) : [];
  },

  remember(room) {
    const l = [room].concat(this.recent().filter(function (r) { return r !== room; })).slice(0, RECENT_MAX);
    try {
      wx.setStorageSync(RECENT_KEY, l);
    } catch (e) {
      // storage full: the list is a convenience
    }
  },

  // refresh() → GET /rooms, then render; a failure keeps the badges shown
  refresh() {
    return this.client.api.rooms().then((list) => {
      this.client.unread.update(list);
      this.setData({ error: '' });
      this.render();
    }, () => {
      this.setData({ error: 'Could not load unread counts — pull down to try again' });
    });
  },

  render() {
    const unread = this.client.unread;
    const names = [this.client.config.room || 'lobby'];
    this.recent().concat(unread.rooms()).forEach(function (r) { if (names.indexOf(r) < 0) names.push(r); });
    this.setData({
      rooms: names.map(function (r) { return { room: r, badge: extras.badge(unread.count(r)) }; })
    });
  },

  open(room) {
    this.remember(room);
    wx.navigateTo({ url: '/pages/chat/chat?room=' + encodeURIComponent(room) });
  },

  onOpen(e) {
    const room = e.currentTarget.dataset.room;
    if (typeof room === 'string' && ROOM_RE.test(room)) this.open(room);
  },

  onNameInput(e) {
    this.setData({ name: e.detail.value });
  },

  onJoin() {
    const room = String(this.data.name || '').trim().replace(/^#/, '');
    if (!ROOM_RE.test(room)) {
      wx.showToast({ title: 'Letters, digits, _ and - only', icon: 'none' });
      return;
    }
    this.setData({ name: '' });
    this.open(room);
  },

  onProfile() {
    wx.navigateTo({ url: '/pages/profile/profile' });
  }
}, privacy.pageMethods()));
