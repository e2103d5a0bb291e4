// Recall, reactions, typing, @mentions and unread counts (protocol.md §8):
// the logic both clients share, without DOM or wx calls — plain values in,
// plain values out. The same file is miniprogram/utils/extras.js (CommonJS)
// and web/static/extras.js (window.PandaExtras); a test keeps them equal.
//
// Invariants:
//   - events are applied once: a message remembers the id of the last event
//     applied to it, and events of one room come in id order, so a replayed
//     event (reconnect with since) changes nothing;
//   - a reaction event says what is true now ("on"), it is not a toggle, so
//     counts follow who is known to react; counts from /history are a
//     snapshot that later events move;
//   - nothing here builds markup: callers render every user string as text.
(function (root, factory) {
  'use strict';
  var api = factory();
  if (typeof module === 'object' && module && module.exports) module.exports = api;
  else root.PandaExtras = api;
}(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  var RECALL_WINDOW = 2 * 60 * 1000; // the server's --recall-window default
  var RECALL_MARGIN = 5 * 1000; // the menu stops offering recall a little early
  var EMOJI = ['👍', '😂', '🎉', '😮', '😢', '🙏'];
  var TYPING_EVERY = 3000; // at most one typing frame per 3 s
  var TYPING_SHOW = 5000; // others' "typing…" lasts this long after their last frame
  var MAX_MENTIONS = 20;
  var MAX_EMOJI_LENGTH = 16; // UTF-16 units: one emoji, joiners included
  var ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;

  function isObj(v) { return !!v && typeof v === 'object' && !Array.isArray(v); }
  function isId(v) { return typeof v === 'number' && v > 0 && Math.floor(v) === v; }
  function validEmoji(e) { return typeof e === 'string' && e.length > 0 && e.length <= MAX_EMOJI_LENGTH; }

  // ------------------------------------------------------------ events

  // isEvent(frame): a stored event of the room (it has an id in the room's
  // sequence but is not a message).
  function isEvent(f) {
    return isObj(f) && (f.type === 'recall' || f.type === 'reaction') && isId(f.id);
  }

  // isMessage(frame): a chat message, live or from /history/replay (a
  // recalled one may come without content).
  function isMessage(f) {
    if (!isObj(f) || !isId(f.id)) return false;
    if (f.type === 'user' || f.type === 'remote') return true;
    return f.type === undefined && (f.text === true || f.gallery === true || f.recalled === true);
  }

  // ------------------------------------------------------------ per-message state

  // extrasOf(item, meUid, horizon) → {recalled, reactions, ev}: the state a
  // message arrives with. reactions: {emoji: {count, mine, who: {uid: on}}}.
  // From /history?v=2: "reactions":{"👍":3} and the caller's own,
  // "myReactions":["👍"]. horizon: the room's last id when the page was read
  // (X-Last-Id): the page holds every event up to it, so only later ones
  // may still change the message.
  function extrasOf(item, meUid, horizon) {
    var x = { recalled: !!(item && item.recalled), reactions: {}, ev: isId(horizon) ? horizon : 0 };
    var r = item && item.reactions;
    var mine = item && Array.isArray(item.myReactions) ? item.myReactions : [];
    if (isObj(r) && !x.recalled) {
      Object.keys(r).forEach(function (e) {
        if (!validEmoji(e)) return;
        var v = r[e];
        var n = typeof v === 'number' ? v : (isObj(v) && typeof v.count === 'number' ? v.count : 0);
        n = Math.floor(n);
        if (!(n > 0)) return;
        var me = mine.indexOf(e) >= 0 || (isObj(v) && v.mine === true);
        var who = {};
        if (me && meUid) who[meUid] = true;
        if (isObj(v) && Array.isArray(v.uids)) v.uids.forEach(function (u) { if (typeof u === 'string') who[u] = true; });
        x.reactions[e] = { count: n, mine: me, who: who };
      });
    }
    return x;
  }

  // applyEvent(x, frame, meUid) → true when the message's state changed.
  // frame: {type:'recall', id, target, uid} or {type:'reaction', id, target,
  // emoji, uid, on}. Events at or below x.ev were applied before.
  function applyEvent(x, f, meUid) {
    if (!x || !isEvent(f) || f.id <= x.ev) return false;
    x.ev = f.id;
    if (f.type === 'recall') {
      if (x.recalled) return false;
      x.recalled = true;
      x.reactions = {};
      return true;
    }
    if (x.recalled || !validEmoji(f.emoji) || typeof f.uid !== 'string' || !f.uid) return false;
    var on = f.on !== false;
    var r = x.reactions[f.emoji];
    if (!r) {
      if (!on) return false; // nothing to take away
      r = x.reactions[f.emoji] = { count: 0, mine: false, who: {} };
    }
    var was = r.who[f.uid];
    if (on && was === true) return false; // already counted
    if (!on && was === false) return false; // already taken away
    r.who[f.uid] = on;
    r.count = Math.max(0, r.count + (on ? 1 : -1));
    if (f.uid === meUid) r.mine = on;
    if (r.count === 0) delete x.reactions[f.emoji];
    return true;
  }

  // chips(x) → [{emoji, count, mine}] in the order the emoji first came.
  function chips(x) {
    if (!x || x.recalled) return [];
    return Object.keys(x.reactions).map(function (e) {
      var r = x.reactions[e];
      return { emoji: e, count: r.count, mine: !!r.mine };
    });
  }

  // reactFrame(id, emoji) → the frame that toggles the user's reaction.
  function reactFrame(id, emoji) { return { react: id, emoji: emoji }; }
  function recallFrame(id) { return { recall: id }; }

  // ------------------------------------------------------------ recall

  // createClock(): the room's clock as seen from here. Frame times are the
  // room's clock when it accepted a message; observed on arrival they lag
  // by the trip, so the largest (time − local arrival) seen is the closest
  // estimate of the offset. Only frames known to be live (the echo of a
  // message just sent) may be observed: a replayed one is old.
  function createClock(localNow) {
    var now = localNow || function () { return Date.now(); };
    var offset = null;
    return {
      observe: function (serverTime) {
        if (typeof serverTime !== 'number' || !(serverTime > 0)) return;
        var o = serverTime - now();
        if (offset === null || o > offset) offset = o;
      },
      now: function () { return now() + (offset || 0); },
      get offset() { return offset || 0; }
    };
  }

  // recallLeft(m, meUid, serverNow) → ms the menu may still offer recall
  // (0: not this message: someone else's, not stored yet, recalled, too old).
  function recallLeft(m, meUid, serverNow, x) {
    if (!m || !isId(m.id) || (x && x.recalled) || m.recalled) return 0;
    var own = m.type === 'user' || (!!meUid && m.uid === meUid);
    if (!own || typeof m.time !== 'number') return 0;
    var left = m.time + RECALL_WINDOW - RECALL_MARGIN - serverNow;
    return left > 0 ? left : 0;
  }

  // recallLabel(nickName, mine) → the line shown in place of a recalled message.
  function recallLabel(nickName, mine) {
    if (mine) return 'You recalled a message';
    return (nickName ? String(nickName) : 'Someone') + ' recalled a message';
  }

  // ------------------------------------------------------------ typing

  // createTypingSender(every): shouldSend(now, text) is true at most once per
  // `every` ms, and only while there is something in the box. (The server
  // drops a user's typing frames closer than 3 s, so sending a message does
  // not start the count over.)
  function createTypingSender(every) {
    var gap = every || TYPING_EVERY;
    var last = -Infinity;
    return {
      shouldSend: function (now, text) {
        if (typeof text !== 'string' || !text.trim()) return false;
        if (now - last < gap) return false;
        last = now;
        return true;
      }
    };
  }

  // createTypists(show): who else is typing. add() on a typing frame,
  // remove() when their message arrives; each lasts `show` ms.
  function createTypists(show) {
    var ttl = show || TYPING_SHOW;
    var byUid = {}; // uid → {nickName, until}
    var order = [];
    function prune(now) {
      order = order.filter(function (u) {
        if (byUid[u] && byUid[u].until > now) return true;
        delete byUid[u];
        return false;
      });
    }
    return {
      add: function (uid, nickName, now) {
        if (typeof uid !== 'string' || !uid) return false;
        var had = !!byUid[uid] && byUid[uid].until > now;
        byUid[uid] = { nickName: nickName ? String(nickName) : 'Someone', until: now + ttl };
        if (order.indexOf(uid) < 0) order.push(uid);
        return !had;
      },
      remove: function (uid) {
        if (!byUid[uid]) return false;
        delete byUid[uid];
        order = order.filter(function (u) { return u !== uid; });
        return true;
      },
      clear: function () { byUid = {}; order = []; },
      names: function (now) {
        prune(now);
        return order.map(function (u) { return byUid[u].nickName; });
      },
      // label(now) → '' | 'Bob is typing…' | 'Bob and Mei are typing…' | 'Several people are typing…'
      label: function (now) {
        var n = this.names(now);
        if (!n.length) return '';
        if (n.length === 1) return n[0] + ' is typing…';
        if (n.length === 2) return n[0] + ' and ' + n[1] + ' are typing…';
        return 'Several people are typing…';
      },
      // nextChange(now) → ms until someone's "typing" runs out (-1: nobody)
      nextChange: function (now) {
        prune(now);
        var min = -1;
        order.forEach(function (u) {
          var d = byUid[u].until - now;
          if (min < 0 || d < min) min = d;
        });
        return min;
      }
    };
  }

  // ------------------------------------------------------------ mentions

  // createMembers(): the room's people as far as this client knows them
  // (senders of the messages it holds, presence joins), newest name per uid.
  function createMembers() {
    var byUid = {};
    var order = []; // most recently seen first
    return {
      see: function (uid, nickName) {
        if (typeof uid !== 'string' || !uid || typeof nickName !== 'string' || !nickName.trim()) return;
        byUid[uid] = nickName;
        order = [uid].concat(order.filter(function (u) { return u !== uid; }));
      },
      name: function (uid) { return byUid[uid]; },
      list: function () { return order.map(function (u) { return { uid: u, nickName: byUid[u] }; }); },
      get size() { return order.length; }
    };
  }

  // mentionQuery(text, caret) → {start, query} while the user types an @name
  // before the caret (the @ at the start or after a space), else null.
  function mentionQuery(text, caret) {
    if (typeof text !== 'string') return null;
    var end = typeof caret === 'number' ? Math.max(0, Math.min(caret, text.length)) : text.length;
    var from = Math.max(0, end - 33); // a nickname has at most 32 characters
    for (var i = end - 1; i >= from; i--) {
      var c = text.charAt(i);
      if (c === '\n') return null;
      if (c === '@' && (i === 0 || /\s/.test(text.charAt(i - 1)))) {
        var q = text.slice(i + 1, end);
        if (/^\s/.test(q) || /\s\s/.test(q)) return null;
        return { start: i, end: end, query: q };
      }
    }
    return null;
  }

  // mentionCandidates(members, query, meUid, limit): names that start with
  // the query first, then names that contain it; the user is left out.
  function mentionCandidates(list, query, meUid, limit) {
    var q = String(query || '').toLowerCase();
    var starts = [], contains = [];
    (list || []).forEach(function (m) {
      if (!m || m.uid === meUid) return;
      var n = String(m.nickName).toLowerCase();
      if (n.indexOf(q) === 0) starts.push(m);
      else if (q && n.indexOf(q) > 0) contains.push(m);
    });
    return starts.concat(contains).slice(0, limit || 6);
  }

  // insertMention(text, q, nickName) → {text, caret}: the typed @query
  // replaced by "@nickName ".
  function insertMention(text, q, nickName) {
    var ins = '@' + nickName + ' ';
    var after = text.slice(q.end).replace(/^ /, '');
    return { text: text.slice(0, q.start) + ins + after, caret: q.start + ins.length };
  }

  // mentionsIn(text, picked) → the uids of picked members whose "@name" is
  // still in the text (at most MAX_MENTIONS, each once).
  function mentionsIn(text, picked) {
    var out = [];
    (picked || []).forEach(function (p) {
      if (!p || typeof p.uid !== 'string' || out.indexOf(p.uid) >= 0 || out.length >= MAX_MENTIONS) return;
      if (String(text).indexOf('@' + p.nickName) >= 0) out.push(p.uid);
    });
    return out;
  }

  function mentionsMe(m, meUid) {
    return !!meUid && !!m && Array.isArray(m.mentions) && m.mentions.indexOf(meUid) >= 0;
  }

  // mentionSpans(content, mentions, nameOf, meUid) → [{text}, {text, uid, me}]:
  // the content cut at every "@name" of a mentioned uid (longest name first),
  // for rendering the mentions highlighted. nameOf(uid) → nickName.
  function mentionSpans(content, mentions, nameOf, meUid) {
    var text = String(content == null ? '' : content);
    var names = [];
    (Array.isArray(mentions) ? mentions : []).forEach(function (uid) {
      var n = typeof uid === 'string' && nameOf ? nameOf(uid) : '';
      if (typeof n === 'string' && n) names.push({ uid: uid, at: '@' + n });
    });
    names.sort(function (a, b) { return b.at.length - a.at.length; });
    var out = [];
    var plain = '';
    var i = 0;
    while (i < text.length) {
      var hit = null;
      if (text.charAt(i) === '@') {
        for (var k = 0; k < names.length; k++) {
          if (text.substr(i, names[k].at.length) === names[k].at) { hit = names[k]; break; }
        }
      }
      if (hit) {
        if (plain) out.push({ text: plain });
        plain = '';
        out.push({ text: hit.at, uid: hit.uid, me: hit.uid === meUid });
        i += hit.at.length;
      } else {
        plain += text.charAt(i);
        i++;
      }
    }
    if (plain || !out.length) out.push({ text: plain });
    return out;
  }

  // ------------------------------------------------------------ unread

  // parseRooms(body) → [{room, lastId, readId, unread, mentions}] from GET
  // /rooms (a list, or {rooms: [...]}); unread is the server's count of
  // others' messages when it gives one, else lastId − readId; mentions: how
  // many of them mention the user.
  function parseRooms(body) {
    var list = Array.isArray(body) ? body : (isObj(body) && Array.isArray(body.rooms) ? body.rooms : []);
    var out = [];
    list.forEach(function (r) {
      if (!isObj(r)) return;
      var name = typeof r.room === 'string' ? r.room : r.name;
      if (typeof name !== 'string' || !ROOM_RE.test(name)) return;
      var last = typeof r.lastId === 'number' && r.lastId > 0 ? r.lastId : 0;
      var read = typeof r.readId === 'number' && r.readId > 0 ? r.readId : 0;
      var unread = typeof r.unread === 'number' && r.unread >= 0 ? Math.floor(r.unread) : Math.max(0, last - read);
      var mentions = typeof r.mentions === 'number' && r.mentions > 0 ? Math.min(Math.floor(r.mentions), unread) : 0;
      out.push({ room: name, lastId: last, readId: read, unread: unread, mentions: mentions });
    });
    return out;
  }

  // createUnread(): unread counts per room, from GET /rooms and what this
  // client read since (a room it read up to its last id has no unread).
  function createUnread() {
    var rooms = {}; // room → {lastId, readId, unread, mentions}
    var order = [];
    var readLocal = {}; // room → highest id read here
    function fix(name) {
      var r = rooms[name];
      var local = readLocal[name] || 0;
      if (r && local > r.readId) {
        r.unread = local >= r.lastId ? 0 : Math.min(r.unread, r.lastId - local);
        r.mentions = Math.min(r.mentions, r.unread);
        r.readId = local;
      }
    }
    return {
      // update(body) from GET /rooms
      update: function (body) {
        var parsed = parseRooms(body);
        rooms = {};
        order = [];
        parsed.forEach(function (r) {
          if (rooms[r.room]) return;
          rooms[r.room] = { lastId: r.lastId, readId: r.readId, unread: r.unread, mentions: r.mentions };
          order.push(r.room);
          fix(r.room);
        });
        return order.slice();
      },
      // read(room, id): this client showed the room up to id
      read: function (name, id) {
        if (!isId(id)) return;
        if (!(readLocal[name] >= id)) readLocal[name] = id;
        var r = rooms[name];
        if (r && id > r.lastId) r.lastId = id;
        fix(name);
      },
      count: function (name) { return rooms[name] ? rooms[name].unread : 0; },
      // mentions(name) → how many of the unread messages mention the user
      mentions: function (name) { return rooms[name] ? rooms[name].mentions : 0; },
      // total(except) → unread of every room but `except`
      total: function (except) {
        var n = 0;
        order.forEach(function (name) { if (name !== except) n += rooms[name].unread; });
        return n;
      },
      rooms: function () { return order.slice(); }
    };
  }

  // createReadMarker(every): when to POST /read. note(id) as the user sees
  // messages; take(now) → the id to post now, or 0 (nothing new, or one post
  // went out less than `every` ms ago: wait(now) says how long).
  function createReadMarker(every) {
    var gap = typeof every === 'number' ? every : 1000;
    var seen = 0, posted = 0, last = -Infinity;
    return {
      note: function (id) { if (isId(id) && id > seen) seen = id; },
      take: function (now) {
        if (seen <= posted || now - last < gap) return 0;
        posted = seen;
        last = now;
        return seen;
      },
      // failed(id): that post did not go through; it is due again
      failed: function (id) { if (posted === id) posted = 0; last = -Infinity; },
      wait: function (now) { return seen <= posted ? -1 : Math.max(0, gap - (now - last)); },
      get seen() { return seen; },
      get posted() { return posted; }
    };
  }

  // badge(n) → the text of an unread badge ('' for none).
  function badge(n) {
    if (!(n > 0)) return '';
    return n > 99 ? '99+' : String(n);
  }

  return {
    RECALL_WINDOW: RECALL_WINDOW,
    RECALL_MARGIN: RECALL_MARGIN,
    EMOJI: EMOJI,
    TYPING_EVERY: TYPING_EVERY,
    TYPING_SHOW: TYPING_SHOW,
    MAX_MENTIONS: MAX_MENTIONS,
    isEvent: isEvent,
    isMessage: isMessage,
    extrasOf: extrasOf,
    applyEvent: applyEvent,
    chips: chips,
    reactFrame: reactFrame,
    recallFrame: recallFrame,
    createClock: createClock,
    recallLeft: recallLeft,
    recallLabel: recallLabel,
    createTypingSender: createTypingSender,
    createTypists: createTypists,
    createMembers: createMembers,
    mentionQuery: mentionQuery,
    mentionCandidates: mentionCandidates,
    insertMention: insertMention,
    mentionsIn: mentionsIn,
    mentionsMe: mentionsMe,
    mentionSpans: mentionSpans,
    parseRooms: parseRooms,
    createUnread: createUnread,
    createReadMarker: createReadMarker,
    badge: badge
  };
}));
