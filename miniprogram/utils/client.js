'use strict';
// Wires the modules together for one `wx`-like adapter and one config.

const { createSession } = require('./session');
const { createAuth } = require('./login');
const { createApi } = require('./api');
const { createChatSocket } = require('./socket');
const { createMessageList } = require('./messages');
const extras = require('./extras');

function createClient(opts) {
  const wx = opts.wx;
  const config = opts.config;
  const session = createSession(wx, opts.storageKey);
  const auth = createAuth({ wx: wx, config: config, session: session, now: opts.now });
  const api = createApi({ wx: wx, config: config, auth: auth });
  return {
    wx: wx,
    config: config,
    session: session,
    auth: auth,
    api: api,
    // unread counts per room, shared by the room list and the chat pages
    unread: extras.createUnread(),
    // socket({room, since, onFrame, onState, timers, random, backoff, presence})
    socket: function (o) {
      return createChatSocket(Object.assign({ wx: wx, config: config, auth: auth }, o || {}));
    },
    messages: function (o) {
      return createMessageList(o);
    }
  };
}

module.exports = { createClient };
