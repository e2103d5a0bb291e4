'use strict';
// URL helpers shared by the request, upload and socket code.

function httpBase(config) {
  return (config.secure === false ? 'http://' : 'https://') + config.host;
}

function wsBase(config) {
  return (config.secure === false ? 'ws://' : 'wss://') + config.host;
}

// query({a: 1, b: undefined}) → "a=1"; keys with undefined/null values are left out.
function query(params) {
  const parts = [];
  Object.keys(params || {}).forEach(function (k) {
    const v = params[k];
    if (v === undefined || v === null || v === '') return;
    parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(String(v)));
  });
  return parts.join('&');
}

function withQuery(url, params) {
  const q = query(params);
  if (!q) return url;
  return url + (url.indexOf('?') >= 0 ? '&' : '?') + q;
}

module.exports = { httpBase, wsBase, query, withQuery };
