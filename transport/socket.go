package transport

import (
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/actors"
	"github.com/pandachat/pandachat/protocol"
)

// socket is the per-connection state kept in gws's session slot.
type socket struct {
	srv       *Server
	ws        *gws.Conn
	out       *outbox
	conn      *actors.Conn
	idle      time.Duration
	closed    atomic.Bool
	opened    time.Time
	uid, room string
	remote    string
}

// events implements gws.Event for every chat socket.
type events struct {
	s *Server
}

func stateOf(c *gws.Conn) *socket {
	v, _ := c.Session().Load("")
	st, _ := v.(*socket)
	return st
}

func (e events) OnOpen(c *gws.Conn) {}

func (e events) OnClose(c *gws.Conn, err error) {
	st := stateOf(c)
	if st == nil || !st.closed.CompareAndSwap(false, true) {
		return
	}
	st.out.gone()
	if st.conn != nil { // nil when the handler failed before the hub took the socket
		st.conn.Closed()
	}
	e.s.opts.Observer.ConnClosed()
	e.s.log.Info("connection closed", "uid", st.uid, "room", st.room, "remote", st.remote,
		"reason", closeReason(err), "duration", time.Since(st.opened).Round(time.Millisecond))
	e.s.open.Add(-1)
	e.s.conns.Done()
}

// testHookPing, when set, sees every client ping (tests inject panics).
var testHookPing atomic.Pointer[func(payload []byte)]

func (e events) OnPing(c *gws.Conn, payload []byte) {
	if h := testHookPing.Load(); h != nil {
		(*h)(payload)
	}
	if st := stateOf(c); st != nil {
		st.touch()
		st.out.Send(protocol.PongFrame(payload))
	}
}

func (e events) OnPong(c *gws.Conn, payload []byte) {
	if st := stateOf(c); st != nil {
		st.touch()
	}
}

func (e events) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	st := stateOf(c)
	if st == nil {
		return
	}
	st.touch()
	st.conn.Receive(m.Bytes(), m.Opcode == gws.OpcodeBinary)
}

// readLoop runs gws's read loop for one socket. gws recovers panics in
// OnMessage only; a panic anywhere else in the loop (its frame parser, the
// control-frame handlers, the wire check) ends here and closes this socket
// alone. Its frame is under every read loop's: with one pointer to keep, a
// loop that reads pongs still fits the goroutine's first stack.
func (st *socket) readLoop() {
	defer st.recoverReader()
	st.ws.ReadLoop()
}

func (st *socket) recoverReader() {
	if p := recover(); p != nil {
		st.srv.panicked(st.ws, "connection reader", p)
	}
}

// recoverSocket, deferred, stops a panic in a goroutine that serves ws.
func (s *Server) recoverSocket(ws *gws.Conn, where string) {
	if p := recover(); p != nil {
		s.panicked(ws, where, p)
	}
}

// panicked handles a panic p in a goroutine that serves ws: it is logged with
// its stack, the socket gets 1011 and closes, and what the server holds for
// it is released as for any close.
func (s *Server) panicked(ws *gws.Conn, where string, p any) {
	args := []any{"where", where, "panic", p, "stack", string(debug.Stack())}
	if st := stateOf(ws); st != nil {
		args = append(args, "uid", st.uid, "room", st.room, "remote", st.remote)
	}
	s.log.Error("panic serving a websocket", args...)
	_ = ws.WriteClose(protocol.CloseInternal, []byte("internal error"))
	_ = ws.NetConn().Close()
	events{s}.OnClose(ws, fmt.Errorf("panic in %s: %v", where, p))
}

// touch moves the idle deadline: any traffic from the peer proves it alive.
// It sets it on the socket itself, one frame shallower than through the
// wireConn: a pong then fits the read loop's first stack.
func (st *socket) touch() {
	_ = st.out.conn.Conn.SetReadDeadline(time.Now().Add(st.idle))
}

func closeReason(err error) string {
	var ce *gws.CloseError
	switch {
	case err == nil:
		return "closed"
	case errors.As(err, &ce):
		return "peer closed: " + ce.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "idle timeout"
	}
	return err.Error()
}

// oneSlot is a gws session storage holding just our state: far smaller than the default map.
type oneSlot struct {
	v atomic.Value
}

func (s *oneSlot) Len() int { return 1 }
func (s *oneSlot) Load(string) (any, bool) {
	v := s.v.Load()
	return v, v != nil
}
func (s *oneSlot) Delete(string)         {}
func (s *oneSlot) Store(_ string, v any) { s.v.Store(v) }
func (s *oneSlot) Range(f func(string, any) bool) {
	if v := s.v.Load(); v != nil {
		f("", v)
	}
}
