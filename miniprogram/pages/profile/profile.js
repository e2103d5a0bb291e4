// Profile: avatar from <button open-type="chooseAvatar">, nickname from
// <input type="nickname">, saved with POST /profile. The avatar's temporary
// file is uploaded to /upload first; the profile stores the absolute media URL.

Page({
  data: {
    avatarUrl: '',
    nickName: '',
    uploading: false,
    saving: false
  },

  onLoad() {
    this.client = getApp().client;
    this.uploadedUrl = '';
    const s = this.client.session.get();
    if (s && s.userInfo) this.fill(s.userInfo);
    this.client.api.me().then((p) => this.fill(p), () => null);
  },

  fill(p) {
    if (!p) return;
    this.setData({
      avatarUrl: this.uploadedUrl || p.avatarUrl || '',
      nickName: this.data.nickName || p.nickName || ''
    });
  },

  onChooseAvatar(e) {
    const tempPath = e.detail && e.detail.avatarUrl;
    if (!tempPath) return;
    this.setData({ avatarUrl: tempPath, uploading: true });
    this.client.api.upload(tempPath).then((media) => {
      this.uploadedUrl = media.url;
      this.setData({ avatarUrl: media.url, uploading: false });
    }, (err) => {
      this.setData({ uploading: false });
      wx.showToast({ title: (err && err.status === 413) ? 'Image too large' : 'Upload failed', icon: 'none' });
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
    if (this.data.uploading) return;
    const body = { nickName: nickName };
    if (this.uploadedUrl) body.avatarUrl = this.uploadedUrl;
    this.setData({ saving: true });
    this.client.api.setProfile(body).then(() => {
      this.setData({ saving: false, nickName: nickName });
      wx.showToast({ title: 'Saved', icon: 'success' });
      if (getCurrentPages().length > 1) setTimeout(() => wx.navigateBack(), 600);
    }, (err) => {
      this.setData({ saving: false });
      wx.showToast({ title: (err && err.message) ? err.message.slice(0, 30) : 'Save failed', icon: 'none' });
    });
  }
});
