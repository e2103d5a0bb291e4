// Panda chat room mini-program.
const config = require('./config');
const { createClient } = require('./utils/client');

App({
  onLaunch() {
    // One client for the whole app: session storage, login, API calls.
    this.client = createClient({ wx: wx, config: config });
    // Log in early (wx.login → GET /login); pages wait on the same attempt.
    this.ready = this.client.auth.ensure().catch(function (err) {
      console.warn('login failed', err && (err.code + ': ' + err.message));
      return null;
    });
  }
});
