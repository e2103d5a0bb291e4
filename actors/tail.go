package actors

// tail keeps the room's newest stored messages in memory so a reconnect with
// `since` is served without reading the store.
type tail struct {
	buf   []tailMsg // grows to size, then wraps
	size  int
	start int // index of the oldest once full
}

type tailMsg struct {
	id   uint64
	data []byte
	uid  string
}

// newTail allocates nothing until messages arrive: most rooms are quiet.
func newTail(size int) tail { return tail{size: size} }

// push adds the next message; ids must follow on, else the tail starts anew
// (from assumes no gaps).
func (t *tail) push(m tailMsg) {
	if t.size <= 0 {
		return
	}
	if n := len(t.buf); n > 0 && m.id != t.buf[(t.start+n-1)%n].id+1 {
		clear(t.buf)
		t.buf, t.start = t.buf[:0], 0
	}
	if len(t.buf) < t.size {
		t.buf = append(t.buf, m)
		return
	}
	t.buf[t.start] = m
	t.start = (t.start + 1) % t.size
}

// get returns the message with this id, if the tail holds it.
func (t *tail) get(id uint64) (tailMsg, bool) {
	if len(t.buf) == 0 {
		return tailMsg{}, false
	}
	oldest := t.buf[t.start].id
	if id < oldest || id-oldest >= uint64(len(t.buf)) {
		return tailMsg{}, false
	}
	return t.buf[(t.start+int(id-oldest))%len(t.buf)], true
}

// set replaces the data of the message with this id, if the tail holds it.
func (t *tail) set(id uint64, data []byte) {
	if len(t.buf) == 0 {
		return
	}
	oldest := t.buf[t.start].id
	if id < oldest || id-oldest >= uint64(len(t.buf)) {
		return
	}
	t.buf[(t.start+int(id-oldest))%len(t.buf)].data = data
}

// from returns the messages with id ≥ id in order, if the tail still holds id.
func (t *tail) from(id uint64) ([]tailMsg, bool) {
	if len(t.buf) == 0 {
		return nil, false
	}
	oldest := t.buf[t.start].id
	if id < oldest {
		return nil, false
	}
	skip := int(id - oldest)
	if skip >= len(t.buf) {
		return nil, true
	}
	out := make([]tailMsg, 0, len(t.buf)-skip)
	for i := skip; i < len(t.buf); i++ {
		out = append(out, t.buf[(t.start+i)%len(t.buf)])
	}
	return out, true
}
