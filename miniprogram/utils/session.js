'use strict';
// The wafer-style session ({id, skey}) and the user's public profile, kept in
// the mini-program's local storage so that a restart does not need a new login.

const STORAGE_KEY = 'panda_session';

function createSession(wx, key) {
  const storageKey = key || STORAGE_KEY;

  function get() {
    let value;
    try {
      value = wx.getStorageSync(storageKey);
    } catch (e) {
      return null;
    }
    if (!value || typeof value !== 'object') return null;
    if (typeof value.id !== 'string' || typeof value.skey !== 'string' || !value.id || !value.skey) return null;
    return value;
  }

  // set({id, skey}, userInfo) stores both; userInfo may be left out.
  function set(session, userInfo) {
    if (!session || !session.id || !session.skey) throw new Error('session needs id and skey');
    const value = { id: session.id, skey: session.skey, userInfo: userInfo || null };
    wx.setStorageSync(storageKey, value);
    return value;
  }

  function setUserInfo(userInfo) {
    const current = get();
    if (!current) return null;
    return set(current, userInfo);
  }

  function clear() {
    try {
      wx.removeStorageSync(storageKey);
    } catch (e) {
      // storage unavailable: nothing to clear
    }
  }

  // Headers that authenticate a request with the stored session, or {} without one.
  function headers() {
    const s = get();
    if (!s) return {};
    return { 'X-WX-Id': s.id, 'X-WX-Skey': s.skey };
  }

  return { key: storageKey, get, set, setUserInfo, clear, headers };
}

module.exports = { createSession, STORAGE_KEY };
