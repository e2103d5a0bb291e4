package bench

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/pandachat/pandachat/protocol"
)

// Baseline modes.
const (
	// ModeNaive broadcasts with gws.Broadcaster: the frame is built once,
	// then each connection's gws queue writes it with one call per frame.
	ModeNaive = "naive"
	// ModeCoalesce queues pre-built frames on a bounded per-connection
	// outbox; a writer goroutine, started only when frames are queued,
	// writes everything queued in one call.
	ModeCoalesce = "coalesce"
)

const loginMagic = "F2C224D4-2BCE-4C64-AF9F-A6D872000D1A"

// BaselineOptions configure a baseline server. The zero value is a usable
// coalescing server on a random loopback port.
type BaselineOptions struct {
	Addr         string        // listen address; "" = 127.0.0.1:0
	Mode         string        // ModeNaive or ModeCoalesce; "" = coalesce
	Outbox       int           // coalesce: frames queued per connection before close 1013; 0 = 4096
	WriteTimeout time.Duration // coalesce: a stuck peer is dropped after this; 0 = 10 s
}

// Baseline is a bare gws broadcast server speaking the subset of the chat
// protocol the load generator uses: dev login (any name, fake session),
// /ws with the system frame, and a broadcast of every text message as a
// "remote" frame with a per-room id. No actors, no store, no checks: it is
// the yardstick the real server is measured against.
type Baseline struct {
	URL         string // http://host:port
	opt         BaselineOptions
	ln          net.Listener
	srv         *http.Server
	up          *gws.Upgrader
	mu          sync.Mutex
	room        map[string]*baseRoom
	nextSession atomic.Uint64
}

type baseRoom struct {
	mu      sync.Mutex // orders ids and fan-out: every member sees id order
	last    uint64
	members map[*baseMember]struct{}
}

type baseMember struct {
	b    *Baseline
	conn *gws.Conn
	room *baseRoom
	nick string

	mu      sync.Mutex // guards the outbox below
	q       [][]byte
	spare   [][]byte
	running bool
	closed  bool
}

// StartBaseline listens and serves until Close.
func StartBaseline(opt BaselineOptions) (*Baseline, error) {
	if opt.Addr == "" {
		opt.Addr = "127.0.0.1:0"
	}
	if opt.Mode == "" {
		opt.Mode = ModeCoalesce
	}
	if opt.Mode != ModeNaive && opt.Mode != ModeCoalesce {
		return nil, fmt.Errorf("baseline: unknown mode %q (want naive or coalesce)", opt.Mode)
	}
	if opt.Outbox <= 0 {
		opt.Outbox = 4096
	}
	if opt.WriteTimeout <= 0 {
		opt.WriteTimeout = 10 * time.Second
	}
	ln, err := net.Listen("tcp", opt.Addr)
	if err != nil {
		return nil, err
	}
	b := &Baseline{opt: opt, ln: ln, room: map[string]*baseRoom{}, URL: "http://" + ln.Addr().String()}
	b.up = gws.NewUpgrader(baseHandler{b: b}, &gws.ServerOption{
		ReadMaxPayloadSize: 64 << 10,
		Recovery:           gws.Recovery,
		Authorize: func(r *http.Request, s gws.SessionStorage) bool {
			q := r.URL.Query()
			room := q.Get("room")
			if room == "" {
				room = "lobby"
			}
			s.Store("room", room)
			s.Store("nick", q.Get("X-WX-Id"))
			return true
		},
	})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login/dev", b.login)
	mux.HandleFunc("GET /ws", b.ws)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

// Close stops listening and closes every connection.
func (b *Baseline) Close() error {
	err := b.srv.Close()
	b.mu.Lock()
	rooms := make([]*baseRoom, 0, len(b.room))
	for _, r := range b.room {
		rooms = append(rooms, r)
	}
	b.mu.Unlock()
	for _, r := range rooms {
		r.mu.Lock()
		for m := range r.members {
			_ = m.conn.NetConn().Close()
		}
		r.mu.Unlock()
	}
	return err
}

func (b *Baseline) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		NickName string `json:"nickName"`
	}
	_ = json.NewDecoder(r.Body).Decode(&in)
	id := "b" + strconv.FormatUint(b.nextSession.Add(1), 10)
	if in.NickName == "" {
		in.NickName = id
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		loginMagic: 1,
		"session":  map[string]string{"id": id, "skey": "baseline"},
		"userInfo": map[string]string{"nickName": in.NickName, "avatarUrl": "", "uid": id},
	})
}

func (b *Baseline) ws(w http.ResponseWriter, r *http.Request) {
	socket, err := b.up.Upgrade(w, r)
	if err != nil {
		return
	}
	go socket.ReadLoop()
}

func (b *Baseline) roomOf(name string) *baseRoom {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.room[name]
	if r == nil {
		r = &baseRoom{members: map[*baseMember]struct{}{}}
		b.room[name] = r
	}
	return r
}

type baseHandler struct {
	gws.BuiltinEventHandler
	b *Baseline
}

func (h baseHandler) OnOpen(socket *gws.Conn) {
	_ = socket.SetDeadline(time.Time{}) // the hijacked conn may carry http.Server deadlines
	name, _ := socket.Session().Load("room")
	nick, _ := socket.Session().Load("nick")
	m := &baseMember{b: h.b, conn: socket, nick: nick.(string)}
	m.room = h.b.roomOf(name.(string))
	socket.Session().Store("m", m)

	r := m.room
	r.mu.Lock()
	r.members[m] = struct{}{}
	sys := []byte(`{"type":"system","num":` + strconv.Itoa(len(r.members)) + `}`)
	m.send(sys)
	r.mu.Unlock()
}

func (h baseHandler) OnClose(socket *gws.Conn, _ error) {
	v, ok := socket.Session().Load("m")
	if !ok {
		return
	}
	m := v.(*baseMember)
	m.room.mu.Lock()
	delete(m.room.members, m)
	m.room.mu.Unlock()
	m.mu.Lock()
	m.closed = true
	m.q = nil
	m.mu.Unlock()
}

func (h baseHandler) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	v, ok := socket.Session().Load("m")
	if !ok {
		return
	}
	m := v.(*baseMember)
	var in struct {
		Text    bool   `json:"text"`
		Content string `json:"content"`
	}
	if message.Opcode != gws.OpcodeText || json.Unmarshal(message.Bytes(), &in) != nil || !in.Text || in.Content == "" {
		m.send([]byte(`{"type":"error","error":"ERR_BAD_MESSAGE","message":"text messages only"}`))
		return
	}
	content, _ := json.Marshal(in.Content)
	nick, _ := json.Marshal(m.nick)

	r := m.room
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last++
	p := make([]byte, 0, 128+len(content)+len(nick))
	p = append(p, `{"type":"remote","id":`...)
	p = strconv.AppendUint(p, r.last, 10)
	p = append(p, `,"number":`...)
	p = strconv.AppendInt(p, int64(len(r.members)), 10)
	p = append(p, `,"time":`...)
	p = strconv.AppendInt(p, time.Now().UnixMilli(), 10)
	p = append(p, `,"uid":`...)
	p = append(p, nick...)
	p = append(p, `,"nickName":`...)
	p = append(p, nick...)
	p = append(p, `,"avatarUrl":"","text":true,"content":`...)
	p = append(p, content...)
	p = append(p, '}')

	if m.b.opt.Mode == ModeNaive {
		bc := gws.NewBroadcaster(gws.OpcodeText, p)
		for o := range r.members {
			_ = bc.Broadcast(o.conn)
		}
		_ = bc.Close()
		return
	}
	f := protocol.TextFrame(p)
	for o := range r.members {
		o.enqueue(f)
	}
}

// send writes one data frame the way the mode writes broadcasts.
func (m *baseMember) send(p []byte) {
	if m.b.opt.Mode == ModeNaive {
		m.conn.WriteAsync(gws.OpcodeText, p, nil)
		return
	}
	m.enqueue(protocol.TextFrame(p))
}

// enqueue never blocks: a full outbox closes the connection with 1013.
func (m *baseMember) enqueue(f []byte) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	if len(m.q) >= m.b.opt.Outbox {
		m.closed = true
		m.q = nil
		m.mu.Unlock()
		go func() {
			_ = m.conn.SetWriteDeadline(time.Now().Add(m.b.opt.WriteTimeout))
			_ = m.conn.WriteClose(1013, []byte("slow consumer"))
		}()
		return
	}
	m.q = append(m.q, f)
	start := !m.running
	m.running = true
	m.mu.Unlock()
	if start {
		go m.writeLoop()
	}
}

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// writeLoop drains everything queued into one buffer and one Write, until
// the outbox is empty; then it ends, so an idle connection has no writer.
// Whole frames in one Write never interleave with gws's own control frames.
func (m *baseMember) writeLoop() {
	bp := writeBufs.Get().(*[]byte)
	defer writeBufs.Put(bp)
	nc := m.conn.NetConn()
	for {
		m.mu.Lock()
		q := m.q
		if len(q) == 0 || m.closed {
			m.running = false
			m.mu.Unlock()
			return
		}
		m.q, m.spare = m.spare[:0], nil
		m.mu.Unlock()

		buf := (*bp)[:0]
		for i, f := range q {
			buf = append(buf, f...)
			q[i] = nil
		}
		if cap(buf) <= 1<<20 {
			*bp = buf
		}
		_ = nc.SetWriteDeadline(time.Now().Add(m.b.opt.WriteTimeout))
		_, err := nc.Write(buf)

		m.mu.Lock()
		if m.spare == nil {
			m.spare = q[:0]
		}
		if err != nil {
			m.closed, m.running, m.q = true, false, nil
			m.mu.Unlock()
			_ = nc.Close()
			return
		}
		m.mu.Unlock()
	}
}
