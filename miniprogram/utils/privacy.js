'use strict';
// Consent to the user privacy guide (用户隐私保护指引), for the privacy
// interfaces this client uses: <button open-type="chooseAvatar"> and
// <input type="nickname"> (收集你的昵称、头像), wx.chooseMedia (收集你选中的
// 照片或视频信息) and wx.setClipboardData (读取你的剪切板, long press to copy).
//
// The app registers wx.onNeedPrivacyAuthorization once. When WeChat asks
// (a privacy interface was called before the user agreed), the call waits
// and every page that listens shows its consent panel; its agree button is
// <button id="agree-btn" open-type="agreePrivacyAuthorization">, whose
// bindagreeprivacyauthorization event resolves the waiting calls with
// {event: 'agree', buttonId: 'agree-btn'}; "Not now" resolves them with
// {event: 'disagree'} (the call then fails with "privacy permission is not
// authorized"). wx.getPrivacySetting tells a page to show the panel before
// any call: an <input type="nickname"> falls back to plain text without
// consent and cannot ask by itself.

const AGREE_BUTTON = 'agree-btn';

function createPrivacy(wx) {
  let waiting = []; // resolve functions of the calls on hold
  let referrer = '';
  const listeners = new Set();

  function state() {
    return { show: waiting.length > 0, referrer: referrer };
  }

  function notify() {
    const s = state();
    listeners.forEach(function (fn) {
      try {
        fn(s);
      } catch (e) {
        // a listener's error must not break the others
      }
    });
  }

  function call(resolve, answer) {
    try {
      resolve(answer);
    } catch (e) {
      // the base library refused the answer: nothing more to do here
    }
  }

  // install() → false when the base library has no privacy API (before 2.32.3).
  function install() {
    if (typeof wx.onNeedPrivacyAuthorization !== 'function') return false;
    wx.onNeedPrivacyAuthorization(function (resolve, eventInfo) {
      waiting.push(resolve);
      referrer = (eventInfo && eventInfo.referrer) || '';
      notify();
      // the panel is on screen where a page listens: tell WeChat it was shown
      if (listeners.size) call(resolve, { event: 'exposureAuthorization' });
    });
    return true;
  }

  function settle(answer) {
    const w = waiting;
    waiting = [];
    referrer = '';
    w.forEach(function (r) { call(r, answer); });
    notify();
    return w.length;
  }

  // subscribe(fn) → unsubscribe; fn({show, referrer}) now and on every change.
  function subscribe(fn) {
    listeners.add(fn);
    try {
      fn(state());
    } catch (e) {
      // as in notify
    }
    return function () { listeners.delete(fn); };
  }

  // check() → Promise<boolean>: does the user still have to agree?
  function check() {
    return new Promise(function (resolve) {
      if (typeof wx.getPrivacySetting !== 'function') {
        resolve(false);
        return;
      }
      wx.getPrivacySetting({
        success: function (res) { resolve(!!(res && res.needAuthorization)); },
        fail: function () { resolve(false); }
      });
    });
  }

  function openContract() {
    if (typeof wx.openPrivacyContract !== 'function') return false;
    wx.openPrivacyContract({ fail: function () {} });
    return true;
  }

  return {
    install: install,
    subscribe: subscribe,
    check: check,
    openContract: openContract,
    // agree(): after the agree button's bindagreeprivacyauthorization event
    agree: function () { return settle({ event: 'agree', buttonId: AGREE_BUTTON }); },
    disagree: function () { return settle({ event: 'disagree' }); },
    get waiting() { return waiting.length; },
    get referrer() { return referrer; }
  };
}

// The methods a page with the consent panel (pages/common/privacy.wxml) mixes in.
function pageMethods() {
  return {
    privacyAttach: function () {
      const p = getApp().privacy;
      if (!p) return;
      this.privacyOff = p.subscribe((s) => {
        if (s.show || this.data.privacyShown) this.setData({ privacyShown: s.show, privacyFor: s.referrer });
      });
    },
    privacyDetach: function () {
      if (this.privacyOff) this.privacyOff();
      this.privacyOff = null;
    },
    // bindagreeprivacyauthorization of <button id="agree-btn" open-type="agreePrivacyAuthorization">
    onAgreePrivacy: function () {
      const p = getApp().privacy;
      if (p) p.agree();
      this.setData({ privacyShown: false });
    },
    onDisagreePrivacy: function () {
      const p = getApp().privacy;
      if (p) p.disagree();
      this.setData({ privacyShown: false });
    },
    onOpenPrivacyContract: function () {
      const p = getApp().privacy;
      if (p) p.openContract();
    }
  };
}

module.exports = { createPrivacy, pageMethods, AGREE_BUTTON };
