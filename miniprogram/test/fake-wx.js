'use strict';
// A small in-memory `wx` for the unit tests: storage map, scripted
// login/request/uploadFile answers, fake socket tasks driven by the test, and
// manual timers.

function clone(v) {
  return v === undefined ? v : JSON.parse(JSON.stringify(v));
}

class FakeSocketTask {
  constructor(opts) {
    this.url = opts.url;
    this.header = opts.header || {};
    this.sent = [];
    this.closed = null; // {code, reason, by}
    this.handlers = { open: [], message: [], close: [], error: [] };
  }
  onOpen(cb) { this.handlers.open.push(cb); }
  onMessage(cb) { this.handlers.message.push(cb); }
  onClose(cb) { this.handlers.close.push(cb); }
  onError(cb) { this.handlers.error.push(cb); }
  emit(kind, arg) { this.handlers[kind].slice().forEach(function (cb) { cb(arg); }); }
  // like SocketTask.send: a send on a closed socket (or while failSends is
  // set) calls fail later, as WeChat does
  send(o) {
    if (this.closed || this.failSends) {
      const msg = this.closed ? 'sendSocketMessage:fail socket is closed' : 'sendSocketMessage:fail network';
      Promise.resolve().then(function () { if (o.fail) o.fail({ errMsg: msg }); });
      return;
    }
    this.sent.push(JSON.parse(o.data));
    Promise.resolve().then(function () { if (o.success) o.success({}); });
  }
  close(o) {
    if (this.closed) return;
    this.closed = { code: (o && o.code) || 1000, reason: (o && o.reason) || '', by: 'client' };
    this.emit('close', { code: this.closed.code, reason: this.closed.reason });
  }
  // driven by the test, as the server would
  serverOpen() { this.emit('open', {}); }
  serverSend(frame) { this.emit('message', { data: typeof frame === 'string' ? frame : JSON.stringify(frame) }); }
  serverClose(code, reason) {
    if (this.closed) return;
    this.closed = { code: code, reason: reason || '', by: 'server' };
    this.emit('close', { code: code, reason: reason || '' });
  }
  serverError(msg) { this.emit('error', { errMsg: msg || 'boom' }); }
}

function createFakeWx() {
  const storage = new Map();
  let codeN = 0;
  const wx = {
    storage: storage,
    requests: [],
    uploads: [],
    sockets: [],
    logins: 0,
    // replaceable behaviour
    loginImpl: function () { return { code: 'code' + (++codeN) }; },
    requestImpl: function () { return { statusCode: 404, data: 'not found' }; },
    uploadImpl: function () { return { statusCode: 404, data: 'not found' }; },
    connectImpl: null, // (opts) → 'fail' to call opts.fail instead of returning a task

    getStorageSync: function (k) { return storage.has(k) ? clone(storage.get(k)) : ''; },
    setStorageSync: function (k, v) { storage.set(k, clone(v)); },
    removeStorageSync: function (k) { storage.delete(k); },

    login: function (o) {
      wx.logins++;
      let r;
      try {
        r = wx.loginImpl();
      } catch (e) {
        setImmediate(function () { o.fail && o.fail({ errMsg: 'login:fail ' + e.message }); });
        return;
      }
      setImmediate(function () { o.success(r); });
    },
    request: function (o) {
      const rec = { url: o.url, method: o.method || 'GET', header: Object.assign({}, o.header), data: clone(o.data) };
      wx.requests.push(rec);
      let r;
      try {
        r = wx.requestImpl(rec);
      } catch (e) {
        setImmediate(function () { o.fail && o.fail({ errMsg: 'request:fail ' + e.message }); });
        return;
      }
      setImmediate(function () { o.success({ statusCode: r.statusCode, data: clone(r.data), header: Object.assign({}, r.header) }); });
    },
    // holdUploads: uploads wait for the test: wx.pendingUploads[i].progress(50), .finish()
    holdUploads: false,
    pendingUploads: [],
    uploadFile: function (o) {
      const rec = { url: o.url, filePath: o.filePath, name: o.name, header: Object.assign({}, o.header) };
      wx.uploads.push(rec);
      const listeners = [];
      const task = {
        onProgressUpdate: function (cb) { listeners.push(cb); },
        abort: function () {}
      };
      const finish = function () {
        let r;
        try {
          r = wx.uploadImpl(rec);
        } catch (e) {
          setImmediate(function () { o.fail && o.fail({ errMsg: 'uploadFile:fail ' + e.message }); });
          return;
        }
        // wx.uploadFile hands back the body as a string
        setImmediate(function () { o.success({ statusCode: r.statusCode, data: typeof r.data === 'string' ? r.data : JSON.stringify(r.data) }); });
      };
      const held = {
        rec: rec,
        progress: function (pct) {
          listeners.forEach(function (cb) { cb({ progress: pct, totalBytesSent: pct, totalBytesExpectedToSend: 100 }); });
        },
        finish: finish
      };
      if (wx.holdUploads) wx.pendingUploads.push(held);
      else finish();
      return task;
    },
    connectSocket: function (o) {
      if (wx.connectImpl && wx.connectImpl(o) === 'fail') {
        o.fail && o.fail({ errMsg: 'connectSocket:fail url not in domain list' });
        return undefined;
      }
      const t = new FakeSocketTask(o);
      wx.sockets.push(t);
      return t;
    }
  };
  return wx;
}

function createManualTimers() {
  let next = 1;
  const pending = new Map();
  return {
    delays: [],
    setTimeout: function (fn, ms) {
      const id = next++;
      pending.set(id, { fn: fn, ms: ms });
      this.delays.push(ms);
      return id;
    },
    clearTimeout: function (id) { pending.delete(id); },
    get size() { return pending.size; },
    // run every timer due now (one round)
    flush: function () {
      const due = Array.from(pending.entries());
      pending.clear();
      due.forEach(function (e) { e[1].fn(); });
      return due.length;
    }
  };
}

// let queued promise callbacks and setImmediate answers run
function settle(rounds) {
  let p = Promise.resolve();
  for (let i = 0; i < (rounds || 5); i++) p = p.then(function () { return new Promise(function (r) { setImmediate(r); }); });
  return p;
}

const MAGIC = 'F2C224D4-2BCE-4C64-AF9F-A6D872000D1A';
const CONFIG = Object.freeze({ host: 'chat.test', secure: true, room: 'lobby' });

module.exports = { createFakeWx, createManualTimers, settle, FakeSocketTask, MAGIC, CONFIG };
