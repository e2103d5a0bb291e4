'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createPrivacy, AGREE_BUTTON } = require('../utils/privacy');

test('privacy: without the base library API nothing is installed; check() says no consent is needed', async function () {
  const p = createPrivacy({});
  assert.equal(p.install(), false);
  assert.equal(await p.check(), false);
  assert.equal(p.openContract(), false);
});

test('privacy: calls waiting at once are answered together; listeners see each change', async function () {
  let listener = null;
  const answers = [];
  const wx = {
    onNeedPrivacyAuthorization: function (fn) { listener = fn; },
    getPrivacySetting: function (o) { o.success({ needAuthorization: true }); }
  };
  const p = createPrivacy(wx);
  assert.equal(p.install(), true);
  assert.equal(await p.check(), true);
  // nobody shows a panel yet: no exposure reported, the calls wait
  listener(function (a) { answers.push(['media', a]); }, { referrer: 'wx.chooseMedia' });
  listener(function (a) { answers.push(['avatar', a]); }, { referrer: 'button.chooseAvatar' });
  assert.deepEqual(answers, []);
  const seen = [];
  const off = p.subscribe(function (s) { seen.push(s); });
  assert.deepEqual(seen, [{ show: true, referrer: 'button.chooseAvatar' }], 'a page that comes later shows the panel too');
  assert.equal(p.waiting, 2);
  assert.equal(p.agree(), 2);
  assert.deepEqual(answers, [
    ['media', { event: 'agree', buttonId: AGREE_BUTTON }],
    ['avatar', { event: 'agree', buttonId: AGREE_BUTTON }]
  ]);
  assert.deepEqual(seen[1], { show: false, referrer: '' });
  listener(function (a) { answers.push(['again', a]); }, { referrer: 'wx.chooseMedia' });
  assert.deepEqual(answers[2], ['again', { event: 'exposureAuthorization' }], 'shown by a listening page: exposure reported');
  p.disagree();
  assert.deepEqual(answers[3], ['again', { event: 'disagree' }]);
  off();
  assert.equal(AGREE_BUTTON, 'agree-btn');
});
