'use strict';
// Promise wrappers around wx.request / wx.uploadFile / wx.login and the
// error type that the other modules throw.

const MAGIC = 'F2C224D4-2BCE-4C64-AF9F-A6D872000D1A';
const ERR_INVALID_SESSION = 'ERR_INVALID_SESSION';
const ERR_LOGIN_FAILED = 'ERR_LOGIN_FAILED';

class PandaError extends Error {
  // code: the server's `error` value (e.g. ERR_LOGIN_FAILED), or a local one
  // (ERR_NETWORK, ERR_HTTP, ERR_BAD_ANSWER, ERR_WX_LOGIN).
  constructor(code, message, status) {
    super(message || code);
    this.name = 'PandaError';
    this.code = code;
    this.status = status || 0;
  }
}

function parseMaybeJSON(data) {
  if (typeof data !== 'string') return data;
  try {
    return JSON.parse(data);
  } catch (e) {
    return data;
  }
}

// request(wx, {url, method, header, data}) → Promise<{statusCode, data}>.
// Resolves for every HTTP answer (4xx/5xx too); rejects only when no answer came.
function request(wx, opts) {
  return new Promise(function (resolve, reject) {
    wx.request({
      url: opts.url,
      method: opts.method || 'GET',
      header: opts.header || {},
      data: opts.data,
      dataType: 'json',
      success: function (res) {
        resolve({ statusCode: res.statusCode, data: parseMaybeJSON(res.data), header: res.header || {} });
      },
      fail: function (err) {
        reject(new PandaError('ERR_NETWORK', (err && err.errMsg) || 'request failed'));
      }
    });
  });
}

// uploadFile(wx, {url, filePath, name, header, onProgress}) → Promise<{statusCode, data}>;
// data is parsed as JSON when it is JSON (wx.uploadFile hands back a string).
// onProgress(percent) follows UploadTask.onProgressUpdate.
function uploadFile(wx, opts) {
  return new Promise(function (resolve, reject) {
    const task = wx.uploadFile({
      url: opts.url,
      filePath: opts.filePath,
      name: opts.name || 'file',
      header: opts.header || {},
      formData: opts.formData,
      success: function (res) {
        resolve({ statusCode: res.statusCode, data: parseMaybeJSON(res.data) });
      },
      fail: function (err) {
        reject(new PandaError('ERR_NETWORK', (err && err.errMsg) || 'upload failed'));
      }
    });
    if (opts.onProgress && task && typeof task.onProgressUpdate === 'function') {
      task.onProgressUpdate(function (res) {
        try {
          opts.onProgress(res && res.progress, res);
        } catch (e) {
          // a listener's error must not break the upload
        }
      });
    }
  });
}

// wxLogin(wx) → Promise<code>
function wxLogin(wx) {
  return new Promise(function (resolve, reject) {
    wx.login({
      success: function (res) {
        if (res && res.code) resolve(res.code);
        else reject(new PandaError('ERR_WX_LOGIN', (res && res.errMsg) || 'wx.login gave no code'));
      },
      fail: function (err) {
        reject(new PandaError('ERR_WX_LOGIN', (err && err.errMsg) || 'wx.login failed'));
      }
    });
  });
}

// headerOf(res, name): a response header, whatever case the runtime gives its name.
function headerOf(res, name) {
  const h = (res && res.header) || {};
  const want = String(name).toLowerCase();
  const key = Object.keys(h).find(function (k) { return k.toLowerCase() === want; });
  return key === undefined ? undefined : h[key];
}

// The server's error answer, if `res` is one: {error, message}.
function answerError(res) {
  const d = res && res.data;
  if (d && typeof d === 'object' && !Array.isArray(d) && d.error) {
    return new PandaError(String(d.error), d.message || String(d.error), res.statusCode);
  }
  return null;
}

// Turn an answer into its body or throw: error field → PandaError(code), non-2xx → ERR_HTTP.
function expectOk(res) {
  const err = answerError(res);
  if (err) throw err;
  if (res.statusCode < 200 || res.statusCode >= 300) {
    const body = typeof res.data === 'string' ? res.data : JSON.stringify(res.data);
    throw new PandaError('ERR_HTTP', 'HTTP ' + res.statusCode + (body ? ': ' + String(body).slice(0, 200) : ''), res.statusCode);
  }
  return res.data;
}

module.exports = {
  MAGIC,
  ERR_INVALID_SESSION,
  ERR_LOGIN_FAILED,
  PandaError,
  request,
  uploadFile,
  wxLogin,
  answerError,
  expectOk,
  headerOf,
  parseMaybeJSON
};
