'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createSession, STORAGE_KEY } = require('../utils/session');
const { createFakeWx } = require('./fake-wx');

test('session: set, get, headers, clear', function () {
  const wx = createFakeWx();
  const s = createSession(wx);
  assert.equal(STORAGE_KEY, 'panda_session');
  assert.equal(s.get(), null);
  assert.deepEqual(s.headers(), {});
  s.set({ id: 'i1', skey: 'k1' }, { nickName: 'Panda' });
  assert.deepEqual(wx.storage.get('panda_session'), { id: 'i1', skey: 'k1', userInfo: { nickName: 'Panda' } });
  assert.deepEqual(s.get(), { id: 'i1', skey: 'k1', userInfo: { nickName: 'Panda' } });
  assert.deepEqual(s.headers(), { 'X-WX-Id': 'i1', 'X-WX-Skey': 'k1' });
  s.setUserInfo({ nickName: 'Bamboo' });
  assert.equal(s.get().userInfo.nickName, 'Bamboo');
  assert.equal(s.get().skey, 'k1');
  s.clear();
  assert.equal(s.get(), null);
  assert.equal(wx.storage.has('panda_session'), false);
});

test('session: a broken stored value counts as no session', function () {
  const wx = createFakeWx();
  const s = createSession(wx);
  wx.setStorageSync('panda_session', 'garbage');
  assert.equal(s.get(), null);
  wx.setStorageSync('panda_session', { id: 'x' });
  assert.equal(s.get(), null);
  assert.throws(function () { s.set({ id: 'x' }); });
});
