package actors

// tail keeps the room's newest stored messages in memory so a reconnect with
// `since` is served without reading the store.
type tail struct {
	buf   []tailMsg
	start int // index of the oldest
	n     int
}

type tailMsg struct {
	id   uint64
	data []byte
	uid  string
}

func newTail(size int) tail { return tail{buf: make([]tailMsg, 0, size)} }

func (t *tail) push(m tailMsg) {
	c := cap(t.buf)
	if c == 0 {
		return
	}
	if len(t.buf) < c {
		t.buf = append(t.buf, m)
		t.n++
		return
	}
	t.buf[t.start] = m
	t.start = (t.start + 1) % c
}

// from returns the messages with id ≥ id in order, if the tail still holds id.
func (t *tail) from(id uint64) ([]tailMsg, bool) {
	if t.n == 0 {
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
