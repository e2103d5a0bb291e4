// The one place that names the chat server.
// host: the server's host name (and port, if not the default one).
// secure: true → https:// and wss:// (required by WeChat outside DevTools' "do not verify domains" mode).
module.exports = {
  host: 'chat.example.com',
  secure: true,
  room: 'lobby'
};
