package transport

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/auth"
	"github.com/pandachat/pandachat/protocol"
)

// handleWS authenticates, upgrades, and hands the socket to a conn actor.
// Refusals complete the upgrade so the client can read why, then close 1008.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	var refusal []byte
	sess, u, err := s.wsSession(r) // a ticket, or the id/skey pair
	q := r.URL.Query()
	room := strings.Clone(q.Get("room")) // not a view that keeps the whole request line alive
	if room == "" {
		room = protocol.DefaultRoom
	}
	var since uint64
	hasSince := q.Get("since") != ""
	v2, vOK := version(q.Get("v"))
	refusalCode := uint16(protocol.ClosePolicy)
	switch {
	case err != nil && !errors.Is(err, auth.ErrInvalidSession):
		// The store failed, not the session: the client keeps it and reconnects.
		s.log.Error("session check failed", "err", err)
		refusal = protocol.ErrorFrame(protocol.ErrUnavailable, "session store unavailable; reconnect later", nil)
		refusalCode = protocol.CloseInternal
	case err != nil:
		refusal = protocol.SessionError(protocol.ErrInvalidSession, "session is invalid or expired; log in again")
	case !protocol.ValidRoom(room):
		refusal = protocol.ErrorFrame(protocol.ErrBadRoom, "room must be 1-64 of A-Z a-z 0-9 _ -", nil)
	case !vOK:
		refusal = protocol.ErrorFrame(protocol.ErrBadMessage, "v must be 1 or 2 (the protocol version)", nil)
	case hasSince:
		since, err = strconv.ParseUint(q.Get("since"), 10, 64)
		if err != nil {
			refusal = protocol.ErrorFrame(protocol.ErrBadMessage, "since must be a message id (a whole number)", nil)
		}
	}
	wc, ws, err := s.upgrade(w, r)
	if err != nil {
		return // gws has answered 400
	}
	defer s.recoverSocket(ws, "websocket handler")
	_ = wc.SetDeadline(time.Time{}) // drop deadlines the http.Server set
	if refusal != nil {
		_ = ws.WriteMessage(gws.OpcodeText, refusal)
		_ = ws.WriteClose(refusalCode, []byte("refused"))
		return
	}

	base := s.sharedBase(s.baseURL(r))
	st := &socket{
		srv: s, ws: ws, idle: s.opts.IdleTimeout,
		opened: time.Now(), uid: u.UID, room: room, remote: s.clientAddr(r),
	}
	st.out = &outbox{
		conn:      wc,
		closeFn:   func(code int, reason string) { _ = ws.WriteClose(uint16(code), []byte(reason)) },
		maxFrames: s.opts.Outbox,
		maxBytes:  s.opts.OutboxBytes,
		linger:    2 * time.Second,
		log:       s.log,
		direct:    wc.raw != nil,
	}
	spec := actors.ConnSpec{
		UID:       u.UID,
		SessionID: sess.ID,
		Expires:   sess.Expires,
		NickName:  u.Profile.NickName,
		AvatarURL: u.Profile.AvatarURL,
		Room:      room,
		Since:     since,
		HasSince:  hasSince,
		Presence:  q.Get("presence") == "1",
		V2:        v2,
		Sink:      st.out,
		Base:      base,
	}
	if m := s.opts.Media; m != nil {
		// Our own media is kept as a path: recipients make it absolute with their base.
		spec.Resolve = func(raw string) (string, error) {
			abs, err := m.Resolve(raw, base)
			return strings.TrimPrefix(abs, base), err
		}
	}
	// Counted before the hub can send it anything: a socket that has its
	// system frame is one that a drain waits for.
	s.admit.Lock()
	if s.draining.Load() { // shutdown began during the upgrade
		s.admit.Unlock()
		_ = ws.WriteClose(protocol.CloseGoingAway, []byte("server shutting down"))
		return
	}
	s.conns.Add(1)
	s.admit.Unlock()
	s.open.Add(1)
	if st.conn, err = s.opts.Hub.Connect(spec); err != nil {
		s.open.Add(-1)
		s.conns.Done()
		code, msg := protocol.ErrUnavailable, "server busy; try again"
		switch {
		case errors.Is(err, actors.ErrTooManyConnections):
			code, msg = protocol.ErrTooManyConns, "too many connections for this user; close one first"
		case errors.Is(err, actors.ErrConnectRate):
			code, msg = protocol.ErrRateLimited, "too many new connections for this user; try again in a few seconds"
		}
		_ = ws.WriteMessage(gws.OpcodeText, protocol.ErrorFrame(code, msg, nil))
		_ = ws.WriteClose(protocol.ClosePolicy, []byte("refused"))
		return
	}
	ws.Session().Store("", st)
	s.opts.Observer.ConnOpened()
	st.touch()
	s.log.Info("connection opened", "uid", u.UID, "room", room, "remote", st.remote)
	go st.readLoop()
}

// version reads the v query parameter: absent or 1 is the original protocol,
// 2 adds recalls, reactions, typing and mentions.
func version(v string) (v2, ok bool) {
	switch v {
	case "", "1":
		return false, true
	case "2":
		return true, true
	}
	return false, false
}

// upgrade takes the connection over from net/http and completes the WebSocket
// handshake with every byte from the client passing through a wireConn first:
// also the bytes the HTTP server had already read behind the request, which a
// client may send right after its handshake.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) (*wireConn, *gws.Conn, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "WebSocket needs HTTP/1.1", http.StatusBadRequest)
		return nil, nil, errors.New("response cannot be hijacked")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		early = bytes.Clone(b)
	}
	wc := newWireConn(conn, early, s.opts.ReadLimit, s.opts.WriteTimeout)
	ws, err := s.upgrader.UpgradeFromConn(wc, bufio.NewReaderSize(wc, readBufferSize), r)
	if err != nil {
		return nil, nil, err
	}
	wc.startFraming()
	return wc, ws, nil
}

// clientAddr is the peer address; behind a trusted proxy, the one it forwarded.
func (s *Server) clientAddr(r *http.Request) string {
	if s.opts.TrustProxy {
		if v := r.Header.Get("X-Real-IP"); v != "" {
			return v
		}
	}
	return r.RemoteAddr
}
