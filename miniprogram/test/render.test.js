'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createListRenderer, utf8Length, MAX_GONE } = require('../utils/render');
const { applySetData } = require('./page-shim');

function item(id, extra) {
  return Object.assign({ key: 'm' + id, domId: 'msg-' + id, id: id, text: true, content: 'm' + id }, extra || {});
}

function items(a, b) {
  const out = [];
  for (let i = a; i <= b; i++) out.push(item(i));
  return out;
}

// apply payloads to a data object as setData would, and return what the page shows
function run(r, data, view) {
  const payloads = r.plan(view);
  payloads.forEach(function (p) { applySetData(data, p); });
  return payloads;
}

function shown(data) {
  return data.items.filter(function (x) { return !x.gone; });
}

test('render: a new message is appended by path; unchanged items are not sent again', function () {
  const r = createListRenderer();
  const data = { items: [] };
  let p = run(r, data, items(1, 100));
  assert.equal(p.length, 1);
  assert.ok(Array.isArray(p[0].items), 'the first render sets the array');
  p = run(r, data, items(1, 101));
  assert.deepEqual(p, [{ 'items[100]': item(101) }]);
  p = run(r, data, items(1, 101));
  assert.deepEqual(p, [], 'nothing changed, nothing sent');
  // a pending bubble confirmed where it is: one path
  const v = items(1, 101).concat([{ key: 'pc1', id: 0, pending: true, text: true, content: 'x' }]);
  run(r, data, v);
  v[101] = item(102, { content: 'x' });
  p = run(r, data, v);
  assert.deepEqual(Object.keys(p[0]), ['items[101]']);
  assert.deepEqual(shown(data), v);
});

test('render: the oldest pushed out become small gone entries; no shift, compacted past MAX_GONE', function () {
  const r = createListRenderer();
  const data = { items: [] };
  run(r, data, items(1, 50));
  let p = run(r, data, items(2, 51));
  assert.deepEqual(Object.keys(p[0]).sort(), ['items[0]', 'items[50]']);
  assert.deepEqual(p[0]['items[0]'], { key: '~0', gone: true });
  assert.deepEqual(shown(data), items(2, 51));
  for (let n = 3; n <= MAX_GONE + 1; n++) run(r, data, items(n, n + 49));
  assert.equal(r.fulls, 1, 'still set by path');
  p = run(r, data, items(MAX_GONE + 2, MAX_GONE + 51));
  assert.equal(r.fulls, 2, 'compacted');
  assert.ok(Array.isArray(p[0].items));
  assert.deepEqual(data.items, items(MAX_GONE + 2, MAX_GONE + 51));
});

test('render: a deleted bubble and older messages put in front', function () {
  const r = createListRenderer();
  const data = { items: [] };
  const pend = [{ key: 'pa', content: 'a' }, { key: 'pb', content: 'b' }, { key: 'pc', content: 'c' }];
  run(r, data, items(11, 20).concat(pend));
  const p = run(r, data, items(11, 20).concat([pend[0], pend[2]]));
  assert.deepEqual(Object.keys(p[0]).sort(), ['items[11]', 'items[12]']);
  assert.equal(p[0]['items[12]'].gone, true);
  assert.deepEqual(shown(data), items(11, 20).concat([pend[0], pend[2]]));
  // older page: the array is set anew (in order)
  run(r, data, items(1, 20).concat([pend[0], pend[2]]));
  assert.deepEqual(data.items, items(1, 20).concat([pend[0], pend[2]]));
  // a hole filled in the middle: by path from there on
  const before = items(1, 5).concat(items(10, 12));
  const r2 = createListRenderer();
  const d2 = { items: [] };
  run(r2, d2, before);
  const q = run(r2, d2, items(1, 12));
  assert.deepEqual(Object.keys(q[0]).sort(), ['items[10]', 'items[11]', 'items[5]', 'items[6]', 'items[7]', 'items[8]', 'items[9]']);
  assert.deepEqual(shown(d2), items(1, 12));
});

test('render: no payload passes the budget, even with 2 000 long messages', function () {
  const budget = 256 * 1024;
  const r = createListRenderer({ budget: budget });
  const data = { items: [] };
  const long = '熊猫'.repeat(1000); // 2 000 characters, 6 000 bytes
  const view = [];
  for (let i = 1; i <= 2000; i++) view.push(item(i, { content: long }));
  const p = run(r, data, view);
  assert.ok(p.length > 40, 'split: ' + p.length + ' payloads');
  p.forEach(function (x) {
    const size = utf8Length(JSON.stringify(x));
    assert.ok(size <= budget + 8 * 1024, 'payload of ' + size + ' bytes');
  });
  assert.deepEqual(data.items.length, 2000);
  assert.equal(data.items[1999].content, long);
  assert.equal(utf8Length('熊'), 3);
  assert.equal(utf8Length('😀'), 4);
});
