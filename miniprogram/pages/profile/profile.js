// Profile: avatar from <button open-type="chooseAvatar">, nickname from
// <input type="nickname">, saved with POST /profile. The avatar's temporary
// file is uploaded to /upload first; the profile stores the absolute media URL.
// An avatar whose upload failed is not shown: the page goes back to the avatar
// the server has, says so, and Save leaves the avatar alone.
// Both components are privacy interfaces: the consent panel comes up when
// WeChat asks, and at once when wx.getPrivacySetting says consent is missing
// (without it the nickname input is a plain text input).
const privacy = require('../../utils/privacy');

Page(Object.assign({
  data: {
    avatarUrl: '',
    nickName: '',
    uploading: false,
    progress: 0,
    avatarError: '',
    saving: false,
    privacyShown: false,
    privacyFor: ''
  },

  onLoad() {
    const app = getApp();
    this.client = app.client;
    this.savedAvatar = ''; // the avatar the server has
    this.uploadedUrl = ''; // a new avatar, uploaded, not saved yet
    this.uploadSeq = 0;
    const s = this.client.session.get();
    if (s && s.userInfo) this.fill(s.userInfo);
    this.client.api.me().then((p) => this.fill(p), () => null);
    this.privacyAttach();
    if (app.privacy) {
      app.privacy.check().then((need) => {
        if (need) this.setData({ privacyShown: true });
      });
    }
  },

  onUnload() {
    this.uploadSeq++;
    this.privacyDetach();
  },

  fill(p) {
    if (!p) return;
    this.savedAvatar = p.avatarUrl || '';
    this.setData({
      avatarUrl: this.data.uploading ? this.data.avatarUrl : (this.uploadedUrl || this.savedAvatar),
      nickName: this.data.nickName || p.nickName || ''
    });
  },

  onChooseAvatar(e) {
    const tempPath = e.detail && e.detail.avatarUrl;
    if (!tempPath) return;
    const seq = ++this.uploadSeq;
    this.setData({ avatarUrl: tempPath, uploading: true, progress: 0, avatarError: '' });
    this.client.api.upload(tempPath, {
      onProgress: (pct) => {
        if (seq === this.uploadSeq) this.setData({ progress: Math.round(Number(pct) || 0) });
      }
    }).then((media) => {
      if (seq !== this.uploadSeq) return;
      this.uploadedUrl = media.url;
      this.setData({ avatarUrl: media.url, uploading: false, progress: 100 });
    }, (err) => {
      if (seq !== this.uploadSeq) return;
      const tooLarge = err && (err.status === 413 || err.code === 'ERR_TOO_LARGE');
      // the picture is not on the server: show the avatar that is
      this.setData({
        avatarUrl: this.uploadedUrl || this.savedAvatar,
        uploading: false,
        avatarError: (tooLarge ? 'Image too large' : 'Upload failed') + ' — avatar not changed'
      });
      wx.showToast({ title: tooLarge ? 'Image too large' : 'Upload failed', icon: 'none' });
    });
  },

  onNicknameInput(e) {
    this.setData({ nickName: e.detail.value });
  },

  // WeChat reviews nicknames picked with type="nickname"; a refused one is cleared.
  onNicknameReview(e) {
    if (e.detail && e.detail.pass === false) {
      this.setData({ nickName: '' });
      wx.showToast({ title: 'Nickname not allowed', icon: 'none' });
    }
  },

  // form submit: the reliable way to read an <input type="nickname"> value
  onSave(e) {
    const value = (e.detail && e.detail.value) || {};
    const nickName = String(value.nickName !== undefined ? value.nickName : this.data.nickName).trim();
    if (!nickName) {
      wx.showToast({ title: 'Enter a nickname', icon: 'none' });
      return;
    }
    if (this.data.uploading || this.data.saving) return;
    const body = { nickName: nickName };
    if (this.uploadedUrl) body.avatarUrl = this.uploadedUrl;
    const avatarFailed = !this.uploadedUrl && !!this.data.avatarError;
    this.setData({ saving: true });
    this.client.api.setProfile(body).then((p) => {
      if (body.avatarUrl) this.savedAvatar = (p && p.avatarUrl) || body.avatarUrl;
      this.uploadedUrl = '';
      this.setData({ saving: false, nickName: nickName, avatarUrl: this.savedAvatar });
      wx.showToast({ title: avatarFailed ? 'Nickname saved' : 'Saved', icon: avatarFailed ? 'none' : 'success' });
      if (!avatarFailed && getCurrentPages().length > 1) setTimeout(() => wx.navigateBack(), 600);
    }, (err) => {
      this.setData({ saving: false });
      wx.showToast({ title: (err && err.message) ? err.message.slice(0, 30) : 'Save failed', icon: 'none' });
    });
  }
}, privacy.pageMethods()));
