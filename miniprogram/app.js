// Panda chat room mini-program.
const config = require('./config');
const { createClient } = require('./utils/client');
const { createPrivacy } = require('./utils/privacy');

App({
  onLaunch() {
    // One client for the whole app: session storage, login, API calls.
    this.client = createClient({ wx: wx, config: config });
    // Log in early (wx.login → GET /login); pages wait on the same attempt.
    this.ready = this.client.auth.ensure().catch(function (err) {
      console.warn('login failed', err && (err.code + ': ' + err.message));
      return null;
    });
    // Consent to the user privacy guide, asked for by whichever page is open.
    this.privacy = createPrivacy(wx);
    this.privacy.install();
    this.wakers = new Set();
    this.online = true;
    if (typeof wx.onNetworkStatusChange === 'function') {
      wx.onNetworkStatusChange((res) => {
        this.online = !!(res && res.isConnected);
        this.wake(this.online ? 'online' : 'offline');
      });
    }
  },

  // Back in the foreground, on any page: the chat reconnects at once instead
  // of waiting out the rest of its backoff.
  onShow() {
    this.wake('show');
  },

  // onWake(fn) → off; fn('show' | 'online' | 'offline')
  onWake(fn) {
    this.wakers.add(fn);
    return () => this.wakers.delete(fn);
  },

  wake(why) {
    if (!this.wakers) return;
    this.wakers.forEach(function (fn) {
      try {
        fn(why);
      } catch (e) {
        console.warn('wake listener failed', e && e.message);
      }
    });
  }
});
