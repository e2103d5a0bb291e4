'use strict';
// Login with today's WeChat flow: wx.login gives a one-time code, the server
// trades it for a session at WeChat (jscode2session) and answers
// {MAGIC:1, session:{id, skey}, userInfo}. No wx.getUserInfo: the profile is
// set by the user on the profile page.

const http = require('./http');
const urls = require('./url');

// retryAfter(res) → the seconds a busy server asked to wait (Retry-After), 0 if none.
function retryAfter(res) {
  if (!res || (res.statusCode !== 503 && res.statusCode !== 429)) return 0;
  const h = res.header || {};
  const v = Number(h['Retry-After'] || h['retry-after']);
  return v > 0 && v < 3600 ? v : 1;
}

function createAuth(opts) {
  const wx = opts.wx;
  const config = opts.config;
  const session = opts.session;
  const now = opts.now || Date.now;
  let inflight = null;
  // A login the server was too busy for (503/429 with Retry-After): every
  // caller gets that answer until then, instead of asking again at once.
  let busy = null; // {until, err}

  function doLogin() {
    return http.wxLogin(wx).then(function (code) {
      return http.request(wx, {
        url: urls.httpBase(config) + '/login',
        method: 'GET',
        header: { 'X-WX-Code': code }
      });
    }).then(function (res) {
      const err = http.answerError(res);
      if (err) {
        const after = retryAfter(res);
        if (after > 0) busy = { until: now() + after * 1000, err: err };
        throw err;
      }
      const d = res.data;
      if (!d || typeof d !== 'object' || !d[http.MAGIC] || !d.session || !d.session.id || !d.session.skey) {
        throw new http.PandaError(http.ERR_LOGIN_FAILED, 'unexpected login answer (HTTP ' + res.statusCode + ')', res.statusCode);
      }
      return session.set(d.session, d.userInfo || null);
    });
  }

  // login() always asks WeChat for a new code; concurrent callers share one attempt.
  function login() {
    if (!inflight && busy && now() < busy.until) return Promise.reject(busy.err);
    if (!inflight) {
      busy = null;
      inflight = doLogin().then(function (v) {
        inflight = null;
        return v;
      }, function (e) {
        inflight = null;
        throw e;
      });
    }
    return inflight;
  }

  // ensure(): the stored session, or a new login when there is none.
  function ensure() {
    const s = session.get();
    if (s) return Promise.resolve(s);
    return login();
  }

  // check(): ask the server whether the stored session is still valid (wafer:
  // /login with X-WX-Id + X-WX-Skey → {code:0}). Invalid → cleared, false.
  function check() {
    const s = session.get();
    if (!s) return Promise.resolve(false);
    return http.request(wx, {
      url: urls.httpBase(config) + '/login',
      method: 'GET',
      header: session.headers()
    }).then(function (res) {
      const err = http.answerError(res);
      if (err && err.code === http.ERR_INVALID_SESSION) {
        session.clear();
        return false;
      }
      if (err) throw err;
      return res.statusCode >= 200 && res.statusCode < 300;
    });
  }

  // withSession(fn): run fn(session) → Promise<{statusCode, data}>. An
  // ERR_INVALID_SESSION answer clears the session, logs in again and runs fn
  // once more; a second ERR_INVALID_SESSION is thrown (no loop).
  function withSession(fn) {
    return ensure().then(function (s) {
      return fn(s);
    }).then(function (res) {
      const err = http.answerError(res);
      if (!err || err.code !== http.ERR_INVALID_SESSION) return res;
      session.clear();
      return login().then(function (s2) {
        return fn(s2);
      }).then(function (res2) {
        const err2 = http.answerError(res2);
        if (err2 && err2.code === http.ERR_INVALID_SESSION) {
          session.clear();
          throw err2;
        }
        return res2;
      });
    });
  }

  return { login, ensure, check, withSession, session };
}

module.exports = { createAuth };
