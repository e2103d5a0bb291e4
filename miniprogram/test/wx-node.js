'use strict';
// A `wx` adapter for Node, so the mini-program's utils/ modules can talk to a
// real server in tests: wx.request → fetch, wx.uploadFile → multipart POST,
// wx.connectSocket → a `ws` WebSocket (with headers), wx.login → a code from
// the given source, storage → a Map.

const fs = require('node:fs');
const path = require('node:path');
const WebSocket = require('ws');

const MIME = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp' };

function toQuery(data) {
  return Object.keys(data).map(function (k) {
    return encodeURIComponent(k) + '=' + encodeURIComponent(String(data[k]));
  }).join('&');
}

function headersObject(h) {
  const out = {};
  h.forEach(function (v, k) { out[k] = v; });
  return out;
}

// createWxNode({code: () => string | Promise<string>})
function createWxNode(opts) {
  const storage = new Map();
  const wx = {
    sockets: [], // every task handed out, newest last
    getStorageSync: function (k) { return storage.has(k) ? JSON.parse(storage.get(k)) : ''; },
    setStorageSync: function (k, v) { storage.set(k, JSON.stringify(v)); },
    removeStorageSync: function (k) { storage.delete(k); },

    login: function (o) {
      Promise.resolve().then(function () { return opts.code(); }).then(function (code) {
        o.success && o.success({ code: code, errMsg: 'login:ok' });
      }, function (e) {
        o.fail && o.fail({ errMsg: 'login:fail ' + e.message });
      });
    },

    request: function (o) {
      let url = o.url;
      const method = (o.method || 'GET').toUpperCase();
      const headers = Object.assign({}, o.header);
      let body;
      if (o.data !== undefined && o.data !== null) {
        if (method === 'GET' && typeof o.data === 'object') {
          const q = toQuery(o.data);
          if (q) url += (url.indexOf('?') >= 0 ? '&' : '?') + q;
        } else {
          body = typeof o.data === 'string' ? o.data : JSON.stringify(o.data);
          if (!Object.keys(headers).some(function (k) { return k.toLowerCase() === 'content-type'; })) {
            headers['Content-Type'] = 'application/json';
          }
        }
      }
      fetch(url, { method: method, headers: headers, body: body }).then(function (res) {
        return res.text().then(function (text) {
          let data = text;
          if (o.dataType === undefined || o.dataType === 'json') {
            try { data = JSON.parse(text); } catch (e) { /* keep the text */ }
          }
          o.success && o.success({ statusCode: res.status, data: data, header: headersObject(res.headers) });
        });
      }, function (e) {
        o.fail && o.fail({ errMsg: 'request:fail ' + e.message });
      });
    },

    // fetch reports no upload progress: the task says 0 % when the file is
    // read and 100 % when the answer comes
    uploadFile: function (o) {
      const listeners = [];
      const progress = function (pct, sent, total) {
        listeners.forEach(function (cb) { cb({ progress: pct, totalBytesSent: sent, totalBytesExpectedToSend: total }); });
      };
      let size = 0;
      fs.promises.readFile(o.filePath).then(function (buf) {
        size = buf.length;
        progress(0, 0, size);
        const form = new FormData();
        Object.keys(o.formData || {}).forEach(function (k) { form.append(k, String(o.formData[k])); });
        const type = MIME[path.extname(o.filePath).toLowerCase()] || 'application/octet-stream';
        form.append(o.name, new Blob([buf], { type: type }), path.basename(o.filePath));
        return fetch(o.url, { method: 'POST', headers: Object.assign({}, o.header), body: form });
      }).then(function (res) {
        progress(100, size, size);
        return res.text().then(function (text) {
          o.success && o.success({ statusCode: res.status, data: text });
        });
      }).catch(function (e) {
        o.fail && o.fail({ errMsg: 'uploadFile:fail ' + e.message });
      });
      return { onProgressUpdate: function (cb) { listeners.push(cb); }, abort: function () {} };
    },

    connectSocket: function (o) {
      const ws = new WebSocket(o.url, { headers: Object.assign({}, o.header) });
      const handlers = { open: [], message: [], close: [], error: [] };
      const emit = function (kind, arg) { handlers[kind].slice().forEach(function (cb) { cb(arg); }); };
      ws.on('open', function () { emit('open', { header: {} }); });
      ws.on('message', function (data, isBinary) {
        emit('message', { data: isBinary ? new Uint8Array(data).buffer : data.toString('utf8') });
      });
      ws.on('close', function (code, reason) { emit('close', { code: code, reason: reason.toString('utf8') }); });
      ws.on('error', function (e) { emit('error', { errMsg: e.message }); });
      const task = {
        ws: ws,
        url: o.url,
        onOpen: function (cb) { handlers.open.push(cb); },
        onMessage: function (cb) { handlers.message.push(cb); },
        onClose: function (cb) { handlers.close.push(cb); },
        onError: function (cb) { handlers.error.push(cb); },
        send: function (s) {
          ws.send(s.data, function (err) {
            if (err) s.fail && s.fail({ errMsg: 'send:fail ' + err.message });
            else s.success && s.success({});
          });
        },
        close: function (c) {
          const code = (c && c.code) || 1000;
          if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
          else if (ws.readyState === WebSocket.OPEN) ws.close(code, (c && c.reason) || '');
        }
      };
      wx.sockets.push(task);
      return task;
    }
  };
  return wx;
}

module.exports = { createWxNode };
