'use strict';
// Turns successive views of a list (arrays of items with a unique `key`) into
// setData payloads for one array field of a page, so that a render sends what
// changed and not the whole list:
//
// - the new view is laid over the array where it was: items that did not
//   change are not sent again, changed ones and new ones at the end are set by
//   path (`items[12]`);
// - places freed at either end (the oldest pushed out, a bubble deleted) get
//   a small `{key, gone: true}` that the template skips, so nothing shifts;
//   with more than MAX_GONE of them the array is set anew (compacted);
// - when the view no longer fits over the array (older messages put in front
//   of the first place) the array is set anew too.
//
// A payload never carries more than `budget` bytes (one setData call may carry
// at most 1 024 kB): setting the array anew sends as many items as fit with
// the array, the rest by path in further payloads.

const BUDGET = 256 * 1024;
const MAX_GONE = 32;

// UTF-8 length of a string (what the setData limit counts).
function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function createListRenderer(opts) {
  opts = opts || {};
  const field = opts.field || 'items';
  const budget = opts.budget || BUDGET;
  let keys = []; // key at each place of the page's array; null where gone
  let sigs = []; // JSON of what was set at each place
  let start = 0; // the view occupies [start, start + shown)
  let shown = 0;
  let fulls = 0;

  // entries: [[path, value, json]] → payloads of at most `budget` bytes
  function chunk(entries, first, firstSize) {
    const out = [];
    let cur = first || {};
    let size = firstSize || 0;
    entries.forEach(function (e) {
      const add = utf8Length(e[0]) + utf8Length(e[2]) + 4;
      if (size > 0 && size + add > budget) {
        out.push(cur);
        cur = {};
        size = 0;
      }
      cur[e[0]] = e[1];
      size += add;
    });
    if (size > 0 || Object.keys(cur).length) out.push(cur);
    return out;
  }

  function gone(i) {
    const g = { key: '~' + i, gone: true };
    return [field + '[' + i + ']', g, JSON.stringify(g)];
  }

  // where the new view starts in the array, or -1 when it does not fit
  function align(view) {
    if (!shown || !view.length) return -1;
    const idx = view.findIndex(function (v) { return v.key === keys[start]; });
    if (idx >= 0) return start - idx; // <0 when more was put in front than there is room for
    for (let i = start; i < start + shown; i++) {
      if (keys[i] === view[0].key) return i;
    }
    return -1;
  }

  function full(view, next) {
    fulls++;
    let size = 0;
    let k = 0;
    while (k < view.length && (k === 0 || size + utf8Length(next[k]) + 1 <= budget)) {
      size += utf8Length(next[k]) + 1;
      k++;
    }
    const first = {};
    first[field] = view.slice(0, k);
    const rest = [];
    for (let i = k; i < view.length; i++) rest.push([field + '[' + i + ']', view[i], next[i]]);
    keys = view.map(function (v) { return v.key; });
    sigs = next.slice();
    start = 0;
    shown = view.length;
    return chunk(rest, first, size + field.length);
  }

  // plan(view) → [payload, …] to hand to setData in order (may be empty).
  function plan(view) {
    const n = view.length;
    const next = view.map(function (v) { return JSON.stringify(v); });
    const s = align(view);
    const length = Math.max(keys.length, s + n);
    const goneCount = s < 0 ? 0 : length - n;
    if (s < 0 || goneCount > MAX_GONE) {
      if (!n && !keys.length) return [];
      return full(view, next);
    }
    const entries = [];
    for (let i = start; i < start + shown; i++) {
      if ((i < s || i >= s + n) && keys[i] !== null) {
        const g = gone(i);
        entries.push(g);
        keys[i] = null;
        sigs[i] = g[2];
      }
    }
    for (let j = 0; j < n; j++) {
      const i = s + j;
      if (sigs[i] === next[j] && keys[i] === view[j].key) continue;
      entries.push([field + '[' + i + ']', view[j], next[j]]);
      keys[i] = view[j].key;
      sigs[i] = next[j];
    }
    start = s;
    shown = n;
    return entries.length ? chunk(entries) : [];
  }

  return {
    plan: plan,
    // reset(): the page's array was set by other means; the next plan sets it anew
    reset: function () { keys = []; sigs = []; start = 0; shown = 0; },
    get length() { return keys.length; },
    get shown() { return shown; },
    get fulls() { return fulls; }
  };
}

module.exports = { createListRenderer, utf8Length, BUDGET, MAX_GONE };
