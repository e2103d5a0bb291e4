package persistence

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrConflict is returned by AppendMessages when another writer stored ids of
// the room first (several nodes, each with a room actor that thinks it owns
// the room). Nothing of the refused batch was stored: the writer must read
// LastID again, deliver what the other writer stored, and never reuse the ids.
var ErrConflict = errors.New("persistence: another writer stored this room's ids first")

// JetStreamOptions tune the JetStream store. The zero value is a one-copy
// store with the default names.
type JetStreamOptions struct {
	// Replicas is how many copies of the stream and of each bucket the
	// cluster keeps (default 1).
	Replicas int
	// Prefix, when set, goes in front of every stream, bucket and subject the
	// store makes, so that several stores can share one NATS system (tests).
	// Letters, digits, - and _.
	Prefix string
	// Timeout bounds one store call, retries included (default 10 s: longer
	// than a leader election, which stalls writes about 5 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// JetStream is the Store of cluster mode, on NATS JetStream: one stream holds
// every room's history, one entry per stored batch; key-value buckets hold
// the rest. Every node of the cluster opens it on its own in-process
// connection and sees the same data.
//
// Layout (every name after Prefix):
//
//	stream CHAT, subject room.<room>     one entry per batch: headers Panda-First and
//	                                     Panda-Last (the batch's ids), payload the batch
//	bucket sessions   <session id>       Session JSON, per-key TTL = expiry
//	bucket tickets    <ticket id>        Ticket JSON, per-key TTL = expiry
//	bucket users      <uid>              User JSON
//	bucket openids    <openId>           uid
//	bucket media      <media id>         Media JSON
//	bucket uploads    <uid>              the user's upload records (16 bytes each)
//	bucket trims      <room>             ids below this are trimmed (TrimMessages)
//	bucket effects    <room>.…           recalls and reactions (jetstream_events.go)
//	bucket reads      <uid>              the user's rooms and read positions
//
// A name that is not only letters, digits, - and _ is written as = and its
// base64url form, so every room name and key is a valid subject token.
type JetStream struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	o       JetStreamOptions
	log     *slog.Logger
	chat    jetstream.Stream
	stream  string // the chat stream's name
	subject string // room subject prefix, ending in "."
	api     string // JetStream API prefix
	entry   int    // largest payload of one entry

	sessions, tickets, users, openIDs, media, uploads, trims *bucket
	effects, reads                                           *bucket // jetstream_events.go

	mu    sync.Mutex
	tails map[string]roomTail // room → its last entry, as this store last saw it
}

var _ Store = (*JetStream)(nil)

// roomTail is where a room's history ends: the stream sequence of its last
// entry (what the next write expects) and the last id in it.
type roomTail struct{ seq, last uint64 }

// bucket is one key-value bucket and the stream under it.
type bucket struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream
	name   string // the stream's name, KV_<bucket>
	subj   string // "$KV.<bucket>."
	ttl    bool   // keys carry their own TTL
}

// errCodeDuplicateInProcess: "duplicate message id is in process".
const errCodeDuplicateInProcess = 10158

// Headers of a chat entry.
const (
	hdrFirst = "Panda-First"
	hdrLast  = "Panda-Last"
)

// OpenJetStream creates (or finds) the stream and buckets and returns the
// store. It waits, within ctx, while the cluster has no leader for them yet.
func OpenJetStream(ctx context.Context, js jetstream.JetStream, o JetStreamOptions) (*JetStream, error) {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, c := range o.Prefix {
		if !safeRune(c) {
			return nil, fmt.Errorf("jetstream store: prefix %q: want letters, digits, - and _", o.Prefix)
		}
	}
	s := &JetStream{
		js: js, nc: js.Conn(), o: o, log: o.Logger,
		stream: "CHAT", subject: "room.", api: "$JS.API.",
		tails: map[string]roomTail{},
	}
	if o.Prefix != "" {
		s.stream, s.subject = o.Prefix+"_CHAT", o.Prefix+".room."
	}
	// A batch bigger than the server takes in one message is split over entries.
	s.entry = int(min(s.nc.MaxPayload(), 8<<20)) - 4<<10
	// The stream and the buckets are made side by side: each new replicated
	// one waits for its own leader election.
	var (
		wg   sync.WaitGroup
		errs = make([]error, 10)
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[0] = jsRetryCreate(ctx, "chat stream", func(ctx context.Context) error {
			var err error
			s.chat, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
				Name:        s.stream,
				Description: "pandachat room history: one entry per stored batch",
				Subjects:    []string{s.subject + ">"},
				Retention:   jetstream.LimitsPolicy,
				Storage:     jetstream.FileStorage,
				Replicas:    o.Replicas,
				Duplicates:  2 * time.Minute,
				AllowDirect: true,
			})
			return err
		})
	}()
	for i, b := range []struct {
		p    **bucket
		name string
		ttl  bool
	}{
		{&s.sessions, "sessions", true},
		{&s.tickets, "tickets", true},
		{&s.users, "users", false},
		{&s.openIDs, "openids", false},
		{&s.media, "media", false},
		{&s.uploads, "uploads", false},
		{&s.trims, "trims", false},
		{&s.effects, "effects", false},
		{&s.reads, "reads", false},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			*b.p, errs[i+1] = s.openBucket(ctx, b.name, b.ttl)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("jetstream store: %w", err)
	}
	return s, nil
}

func (s *JetStream) openBucket(ctx context.Context, name string, ttl bool) (*bucket, error) {
	if s.o.Prefix != "" {
		name = s.o.Prefix + "_" + name
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:   name,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: s.o.Replicas,
	}
	if ttl {
		cfg.LimitMarkerTTL = time.Minute // turns per-key TTLs on
	}
	b := &bucket{name: "KV_" + name, subj: "$KV." + name + ".", ttl: ttl}
	err := jsRetryCreate(ctx, "bucket "+name, func(ctx context.Context) error {
		var err error
		if b.kv, err = s.js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return err
		}
		b.stream, err = s.js.Stream(ctx, b.name)
		return err
	})
	return b, err
}

// ctx bounds one store call.
func (s *JetStream) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.o.Timeout)
}

// Sync is a no-op: an acknowledged write is on a quorum of the nodes already
// (on disk at once with --sync, within JetStream's sync interval otherwise).
func (s *JetStream) Sync() error { return nil }

// Close releases nothing: the connection belongs to the cluster node.
func (s *JetStream) Close() error { return nil }

// ---- names ----

func safeRune(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// token is name as one subject token and key: itself when it is only letters,
// digits, - and _, else = and its base64url form (= never occurs in the first
// kind, so two names never share a token).
func token(name string) string {
	ok := name != ""
	for _, c := range name {
		ok = ok && safeRune(c)
	}
	if ok {
		return name
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(name))
}

func (s *JetStream) roomSubject(room string) string { return s.subject + token(room) }

// ---- reading stream messages ----

// msgRequest is JetStream's "get message" request.
type msgRequest struct {
	Seq        uint64 `json:"seq,omitempty"`
	LastBySubj string `json:"last_by_subj,omitempty"`
	NextBySubj string `json:"next_by_subj,omitempty"`
}

// leaderGet reads a message from the stream's leader, which has every
// acknowledged write (a direct get may be answered by a replica a few
// milliseconds behind). nil, nil when there is no such message.
func (s *JetStream) leaderGet(ctx context.Context, stream string, req msgRequest) (*jetstream.RawStreamMsg, error) {
	body, _ := json.Marshal(req)
	var resp struct {
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Hdrs    []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	err := jsRetryEach(ctx, "read "+stream, readAttempt, func(ctx context.Context) error {
		m, err := s.nc.RequestWithContext(ctx, s.api+"STREAM.MSG.GET."+stream, body)
		if err != nil {
			return err
		}
		resp.Message, resp.Error = nil, nil
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("bad answer from %s: %w", stream, err)
		}
		if resp.Error != nil && resp.Error.ErrorCode != jetstream.JSErrCodeMessageNotFound {
			return resp.Error
		}
		return nil
	})
	if err != nil || resp.Message == nil {
		return nil, err
	}
	m := resp.Message
	out := &jetstream.RawStreamMsg{Subject: m.Subject, Sequence: m.Seq, Data: m.Data, Time: m.Time}
	if len(m.Hdrs) > 0 {
		if out.Header, err = nats.DecodeHeadersMsg(m.Hdrs); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// directGet reads a message from the nearest replica (this node's, when it
// has one). A replica that does not answer in time is skipped: the leader is
// asked. nil, nil when the replica has no such message.
func (s *JetStream) directGet(ctx context.Context, st jetstream.Stream, name string, req msgRequest) (*jetstream.RawStreamMsg, error) {
	for range 2 {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		var (
			m   *jetstream.RawStreamMsg
			err error
		)
		switch {
		case req.LastBySubj != "":
			m, err = st.GetLastMsgForSubject(dctx, req.LastBySubj)
		case req.NextBySubj != "":
			m, err = st.GetMsg(dctx, req.Seq, jetstream.WithGetMsgSubject(req.NextBySubj))
		default:
			m, err = st.GetMsg(dctx, req.Seq)
		}
		cancel()
		switch {
		case err == nil:
			return m, nil
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil, nil
		case !jsTransient(err) || ctx.Err() != nil:
			return nil, err
		}
	}
	return s.leaderGet(ctx, name, req)
}

// ---- messages ----

// AppendMessages stores the batch as one entry of the room's subject (more
// when it is bigger than a NATS message may be), each written only if the
// room's last entry is still the one this store saw: a write another node
// made in between makes it fail with ErrConflict, never a second copy of an
// id. The batch's ids must follow the room's last id without a gap.
func (s *JetStream) AppendMessages(room string, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	for i := 1; i < len(msgs); i++ {
		if msgs[i].ID != msgs[i-1].ID+1 {
			return fmt.Errorf("room %q: ids %d and %d of one batch do not follow each other", room, msgs[i-1].ID, msgs[i].ID)
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	t, err := s.tail(ctx, room)
	if err == nil && msgs[0].ID > t.last+1 { // a gap, or a tail from before another writer's ids
		t, err = s.loadTail(ctx, room)
	}
	if err != nil {
		return err
	}
	switch first := msgs[0].ID; {
	case first <= t.last:
		s.forget(room)
		return fmt.Errorf("room %q: id %d is stored already (last %d): %w", room, first, t.last, ErrConflict)
	case first != t.last+1:
		return fmt.Errorf("room %q: id %d after last id %d would leave a gap", room, first, t.last)
	}
	all, events := msgs, hasEffects(msgs)
	if events { // before the entry: a crash after it leaves the mark (jetstream_events.go)
		if err := s.markPending(ctx, room, msgs[0].ID, msgs[len(msgs)-1].ID); err != nil {
			return fmt.Errorf("room %q: %w", room, err)
		}
	}
	subj := s.roomSubject(room)
	for len(msgs) > 0 {
		n, size := 0, 1
		for n < len(msgs) {
			size += 3*binary.MaxVarintLen64 + len(msgs[n].Data) + len(msgs[n].CID) + effectSize(msgs[n].Effect)
			if size > s.entry && n > 0 {
				break
			}
			n++
		}
		chunk := msgs[:n]
		msgs = msgs[n:]
		seq, err := s.publish(ctx, subj, chunk, t.seq)
		if err != nil {
			s.forget(room) // what is stored now is for LastID to say
			if errors.Is(err, ErrConflict) {
				return fmt.Errorf("room %q: %w", room, err)
			}
			return fmt.Errorf("room %q: store ids %d..%d: %w", room, chunk[0].ID, chunk[n-1].ID, err)
		}
		t = roomTail{seq: seq, last: chunk[n-1].ID}
		s.setTail(room, t)
	}
	if events {
		if err := s.applyStored(ctx, room, all); err != nil {
			return fmt.Errorf("room %q: ids %d..%d stored, their effects pending: %w", room, all[0].ID, all[len(all)-1].ID, err)
		}
	}
	return nil
}

// publish writes one entry expecting the subject's last sequence to be
// expect, and returns the entry's sequence.
//
// Some answers need care. A Duplicate ack means an entry with this msg id
// (room and first id) is stored already, and a replicated stream checks
// duplicates before the expected sequence: it is our own earlier attempt only
// when the stored bytes are ours, otherwise another writer took these ids.
// 10071 (wrong last sequence: N) is a conflict, unless the subject's last
// entry is our own earlier attempt (a one-node stream checks the sequence
// first). 10164 and 10163 come while an earlier write of the subject is still
// in the Raft pipeline (or a leader is being elected), 10158 while our own
// earlier attempt is: the same write is tried again as is.
func (s *JetStream) publish(ctx context.Context, subj string, chunk []Message, expect uint64) (uint64, error) {
	payload := encodeEntry(chunk)
	first, last := strconv.FormatUint(chunk[0].ID, 10), strconv.FormatUint(chunk[len(chunk)-1].ID, 10)
	id := subj[len(s.subject):] + ":" + first
	wait := time.Millisecond
	// An attempt sent to a leader that is stepping down gets no answer: short
	// attempts keep that stall short (the msg id makes the retry safe).
	attempt := 500*time.Millisecond + time.Duration(len(payload))*time.Second/(1<<20)
	for {
		m := &nats.Msg{Subject: subj, Data: payload, Header: nats.Header{hdrFirst: {first}, hdrLast: {last}}}
		pctx, cancel := context.WithTimeout(ctx, attempt)
		ack, err := s.js.PublishMsg(pctx, m, jetstream.WithMsgID(id), jetstream.WithExpectLastSequencePerSubject(expect))
		cancel()
		if err == nil && !ack.Duplicate {
			return ack.Sequence, nil
		}
		if err == nil { // a duplicate: ours, or someone else's
			stored, gerr := s.leaderGet(ctx, s.stream, msgRequest{Seq: ack.Sequence})
			switch {
			case gerr != nil:
				err = gerr
			case stored != nil && stored.Subject == subj && bytes.Equal(stored.Data, payload):
				return ack.Sequence, nil
			default:
				return 0, fmt.Errorf("ids from %s were stored by another writer: %w", first, ErrConflict)
			}
		}
		var api *jetstream.APIError
		if errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			// On one node the sequence is checked before duplicates: our own
			// earlier attempt is then the subject's last entry.
			last, gerr := s.leaderGet(ctx, s.stream, msgRequest{LastBySubj: subj})
			if gerr == nil && last != nil && bytes.Equal(last.Data, payload) {
				return last.Sequence, nil
			}
			return 0, fmt.Errorf("%s: %w", api.Description, ErrConflict)
		}
		retry := errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant ||
			api.ErrorCode == errCodeDuplicateInProcess)
		if !retry && !jsTransient(err) {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// tail is the room's last entry: from memory when this store wrote or read
// it last, else from the stream's leader.
func (s *JetStream) tail(ctx context.Context, room string) (roomTail, error) {
	s.mu.Lock()
	t, ok := s.tails[room]
	s.mu.Unlock()
	if ok {
		return t, nil
	}
	return s.loadTail(ctx, room)
}

func (s *JetStream) loadTail(ctx context.Context, room string) (roomTail, error) {
	m, err := s.leaderGet(ctx, s.stream, msgRequest{LastBySubj: s.roomSubject(room)})
	if err != nil {
		return roomTail{}, fmt.Errorf("room %q: read its last entry: %w", room, err)
	}
	var t roomTail
	if m != nil {
		_, last, err := entryIDs(m)
		if err != nil {
			return roomTail{}, fmt.Errorf("room %q: %w", room, err)
		}
		t = roomTail{seq: m.Sequence, last: last}
	}
	s.setTail(room, t)
	return t, nil
}

func (s *JetStream) setTail(room string, t roomTail) {
	s.mu.Lock()
	if len(s.tails) >= 1<<16 { // rooms come and go: start over rather than grow for ever
		clear(s.tails)
	}
	s.tails[room] = t
	s.mu.Unlock()
}

func (s *JetStream) forget(room string) {
	s.mu.Lock()
	delete(s.tails, room)
	s.mu.Unlock()
}

// LastID reads the room's last entry from the stream's leader, so that a room
// starting on any node continues after the last id any node stored.
func (s *JetStream) LastID(room string) (uint64, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	t, err := s.loadTail(ctx, room)
	return t.last, err
}

// entryIDs are the first and last id of a chat entry, from its headers.
func entryIDs(m *jetstream.RawStreamMsg) (first, last uint64, err error) {
	first, err1 := strconv.ParseUint(m.Header.Get(hdrFirst), 10, 64)
	last, err2 := strconv.ParseUint(m.Header.Get(hdrLast), 10, 64)
	if err1 != nil || err2 != nil || last < first {
		return 0, 0, fmt.Errorf("entry %d of %s has no valid ids (%q..%q)", m.Sequence, m.Subject, m.Header.Get(hdrFirst), m.Header.Get(hdrLast))
	}
	return first, last, nil
}

// entry is a decoded chat entry.
type entry struct {
	seq         uint64
	first, last uint64
	msg         *jetstream.RawStreamMsg
}

func toEntry(m *jetstream.RawStreamMsg) (entry, error) {
	first, last, err := entryIDs(m)
	return entry{seq: m.Sequence, first: first, last: last, msg: m}, err
}

// lastEntry is the room's newest entry, from the stream's leader (a replica
// may not have the write just acknowledged yet), ok false when none.
func (s *JetStream) lastEntry(ctx context.Context, subj string) (entry, bool, error) {
	m, err := s.leaderGet(ctx, s.stream, msgRequest{LastBySubj: subj})
	if err != nil || m == nil {
		return entry{}, false, err
	}
	e, err := toEntry(m)
	return e, err == nil, err
}

// nextEntry is the room's first entry at stream sequence seq or later. Entries
// never change once written, so the nearest replica answers; when it lacks
// one up to sequence upto (known to exist), the leader does.
func (s *JetStream) nextEntry(ctx context.Context, subj string, seq, upto uint64) (entry, bool, error) {
	req := msgRequest{Seq: seq, NextBySubj: subj}
	m, err := s.directGet(ctx, s.chat, s.stream, req)
	if err == nil && (m == nil || m.Sequence > upto) && seq <= upto {
		m, err = s.leaderGet(ctx, s.stream, req)
	}
	if err != nil || m == nil {
		return entry{}, false, err
	}
	e, err := toEntry(m)
	return e, err == nil, err
}

// findEntry is the room's first entry whose last id is id or more, found by a
// binary search over stream sequences (a room's ids grow with them): about
// log2(stream length) direct gets. ok false when the room ends below id.
func (s *JetStream) findEntry(ctx context.Context, subj string, id uint64, last entry) (entry, bool, error) {
	if last.last < id {
		return entry{}, false, nil
	}
	if last.first <= id { // the common case: the newest entry
		return last, true, nil
	}
	lo, hi := uint64(1), last.seq
	for lo < hi {
		mid := lo + (hi-lo)/2
		e, ok, err := s.nextEntry(ctx, subj, mid, last.seq)
		if err != nil {
			return entry{}, false, err
		}
		if !ok || e.last >= id {
			hi = mid
		} else {
			lo = e.seq + 1
		}
	}
	return s.nextEntry(ctx, subj, lo, last.seq)
}

// collect appends the messages with ids in [from, to] of the room's entries,
// starting with e and ending with last at the latest, up to limit messages.
func (s *JetStream) collect(ctx context.Context, subj string, e, last entry, from, to uint64, limit int) ([]Message, error) {
	var out []Message
	for {
		msgs, err := decodeEntry(e.msg.Data)
		if err != nil {
			return nil, fmt.Errorf("entry %d of %s: %w", e.seq, subj, err)
		}
		for _, m := range msgs {
			// Ids only go up: should two entries ever hold the same id, the
			// first one stored wins for every reader.
			if m.ID >= from && m.ID <= to && (len(out) == 0 || m.ID > out[len(out)-1].ID) {
				m.Effect = nil // never read back
				out = append(out, m)
				if len(out) == limit {
					return out, nil
				}
			}
		}
		if e.last >= to || e.seq >= last.seq {
			return out, nil
		}
		next, ok, err := s.nextEntry(ctx, subj, e.seq+1, last.seq)
		if err != nil || !ok {
			return out, err
		}
		e = next
	}
}

func (s *JetStream) MessagesAfter(room string, after uint64, limit int) ([]Message, error) {
	if limit <= 0 || after == math.MaxUint64 {
		return nil, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	subj := s.roomSubject(room)
	last, ok, err := s.lastEntry(ctx, subj)
	if err != nil || !ok {
		return nil, err
	}
	from := max(after+1, s.trimmed(ctx, room))
	e, ok, err := s.findEntry(ctx, subj, from, last)
	if err != nil || !ok {
		return nil, err
	}
	msgs, err := s.collect(ctx, subj, e, last, from, last.last, limit)
	if err != nil {
		return nil, err
	}
	return msgs, s.applyRecalls(ctx, room, msgs)
}

func (s *JetStream) MessagesBefore(room string, before uint64, limit int) ([]Message, error) {
	if before <= 1 || limit <= 0 {
		return nil, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	subj := s.roomSubject(room)
	last, ok, err := s.lastEntry(ctx, subj)
	if err != nil || !ok {
		return nil, err
	}
	to := min(before-1, last.last)
	from := uint64(1) // ids follow each other: the page is [to-limit+1, to]
	if uint64(limit) < to {
		from = to - uint64(limit) + 1
	}
	from = max(from, s.trimmed(ctx, room))
	if from > to {
		return nil, nil
	}
	e, ok, err := s.findEntry(ctx, subj, from, last)
	if err != nil || !ok {
		return nil, err
	}
	msgs, err := s.collect(ctx, subj, e, last, from, to, limit)
	if err != nil {
		return nil, err
	}
	return msgs, s.applyRecalls(ctx, room, msgs)
}

// trimmed is the room's first id kept by TrimMessages (0: never trimmed).
func (s *JetStream) trimmed(ctx context.Context, room string) uint64 {
	v, _, err := s.get(ctx, s.trims, token(room), readLeader)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(string(v), 10, 64)
	return n
}

// TrimMessages records keepFrom as the room's first id (reads skip what is
// below it) and purges the entries wholly below it. The room's last entry is
// never purged: its sequence is what the next write expects, and its last id
// is the room's LastID.
func (s *JetStream) TrimMessages(room string, keepFrom uint64) (int, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	subj := s.roomSubject(room)
	t, err := s.loadTail(ctx, room)
	if err != nil || t.last == 0 {
		return 0, err
	}
	end := min(keepFrom, t.last+1)
	var first uint64
	for { // raise the mark with compare-and-set: two trims never lower it
		v, rev, err := s.get(ctx, s.trims, token(room), readLeader)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return 0, err
		}
		mark, _ := strconv.ParseUint(string(v), 10, 64)
		oldest, ok, err := s.nextEntry(ctx, subj, 1, t.seq)
		if err != nil {
			return 0, err
		}
		first = max(mark, 1)
		if ok {
			first = max(mark, oldest.first)
		}
		if first >= end {
			return 0, nil
		}
		err = s.cas(ctx, s.trims, token(room), []byte(strconv.FormatUint(end, 10)), rev)
		if err == nil {
			break
		}
		if !errors.Is(err, errCAS) {
			return 0, err
		}
	}
	keep := t.seq // purge below the entry that holds end, or below the last one
	if last, ok, err := s.lastEntry(ctx, subj); err == nil && ok {
		if e, ok, err := s.findEntry(ctx, subj, end, last); err == nil && ok {
			keep = min(e.seq, t.seq)
		}
	}
	if err := jsRetry(ctx, "trim "+room, func(ctx context.Context) error {
		return s.chat.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(keep))
	}); err != nil {
		s.log.Warn("trimmed history stays on disk until the next trim", "room", room, "err", err)
	}
	if err := s.trimEffects(ctx, room, end); err != nil {
		s.log.Warn("reactions and recalls of trimmed messages stay until the next trim", "room", room, "err", err)
	}
	return int(end - first), nil
}

// encodeEntry is a chat entry's payload: a version byte, then for each
// message its id, its data and its cid, each length-prefixed (uvarints).
// A batch with events is version 2: each message also carries its effect
// (appendEffect), so that the effects can be applied again from the stream.
func encodeEntry(msgs []Message) []byte {
	n, version := 1, byte(1)
	for _, m := range msgs {
		n += 3*binary.MaxVarintLen64 + len(m.Data) + len(m.CID) + effectSize(m.Effect)
		if m.Effect != nil {
			version = 2
		}
	}
	erased := recalledWithin(msgs)
	b := make([]byte, 1, n)
	b[0] = version
	for _, m := range msgs {
		data := m.Data
		if stub, ok := erased[m.ID]; ok { // recalled in the same batch: never stored with its content
			data = stub
		}
		b = binary.AppendUvarint(b, m.ID)
		b = binary.AppendUvarint(b, uint64(len(data)))
		b = append(b, data...)
		b = binary.AppendUvarint(b, uint64(len(m.CID)))
		b = append(b, m.CID...)
		if version == 2 {
			b = appendEffect(b, m.Effect)
		}
	}
	return b
}

// decodeEntry reads an entry's messages, with their effects (version 2).
func decodeEntry(b []byte) ([]Message, error) {
	if len(b) == 0 || b[0] != 1 && b[0] != 2 {
		return nil, errors.New("unknown entry format")
	}
	version := b[0]
	b = b[1:]
	bad := errors.New("truncated entry")
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		v := b[k : k+int(n) : k+int(n)]
		b = b[k+int(n):]
		return v, true
	}
	var out []Message
	for len(b) > 0 {
		id, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, bad
		}
		b = b[k:]
		data, ok1 := field()
		cid, ok2 := field()
		if !ok1 || !ok2 {
			return nil, bad
		}
		m := Message{ID: id, Data: data, CID: string(cid)}
		if version == 2 {
			var err error
			if m.Effect, b, err = readEffect(b); err != nil {
				return nil, err
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// ---- key-value records ----

// How a record is read: from the nearest replica (may be milliseconds behind;
// for the first try of a compare-and-set, which checks it), or from the
// bucket's leader, which has every acknowledged write. Records change, so
// every other read goes to the leader: what one node wrote, every node reads.
type readMode int

const (
	readNear readMode = iota
	readLeader
)

// errCAS is a compare-and-set that lost: read again and retry.
var errCAS = errors.New("persistence: the record changed meanwhile")

// get returns a key's value and revision. A missing or deleted key is
// ErrNotFound, with the revision of its delete marker (0 when none), which a
// compare-and-set then expects.
func (s *JetStream) get(ctx context.Context, b *bucket, key string, mode readMode) ([]byte, uint64, error) {
	req := msgRequest{LastBySubj: b.subj + key}
	var (
		m   *jetstream.RawStreamMsg
		err error
	)
	if mode == readNear {
		m, err = s.directGet(ctx, b.stream, b.name, req)
	} else {
		m, err = s.leaderGet(ctx, b.name, req)
	}
	if err != nil {
		return nil, 0, err
	}
	if m == nil {
		return nil, 0, ErrNotFound
	}
	if m.Header.Get("KV-Operation") != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
		return nil, m.Sequence, ErrNotFound
	}
	return m.Data, m.Sequence, nil
}

func (s *JetStream) getJSON(b *bucket, key string, v any) error {
	ctx, cancel := s.ctx()
	defer cancel()
	data, _, err := s.get(ctx, b, token(key), readLeader)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// put writes a key; until, when set, is when the key goes away by itself.
func (s *JetStream) put(ctx context.Context, b *bucket, key string, val []byte, until time.Time) error {
	var opts []jetstream.PublishOpt
	if !until.IsZero() {
		// TTLs count whole seconds: round up, the reader checks the expiry itself.
		ttl := time.Until(until).Truncate(time.Second) + time.Second
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	return jsRetry(ctx, "write "+b.name, func(ctx context.Context) error {
		_, err := s.js.Publish(ctx, b.subj+key, val, opts...)
		return err
	})
}

func (s *JetStream) putJSON(b *bucket, key string, v any, until time.Time) error {
	val, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	return s.put(ctx, b, token(key), val, until)
}

// cas writes key only if its revision is still rev (0: the key never
// existed); errCAS when another write came first. A write whose answer was
// lost is looked up: stored as ours, it succeeded.
func (s *JetStream) cas(ctx context.Context, b *bucket, key string, val []byte, rev uint64) error {
	wait := 5 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := s.js.Publish(actx, b.subj+key, val, jetstream.WithExpectLastSequencePerSubject(rev))
		cancel()
		if err == nil {
			return nil
		}
		if err = casError(err); errors.Is(err, errCAS) || !jsTransient(err) {
			return err
		}
		if !notProcessed(err) { // maybe stored: see what the leader holds
			cur, crev, gerr := s.get(ctx, b, key, readLeader)
			switch {
			case gerr == nil && bytes.Equal(cur, val):
				return nil
			case crev != rev:
				return errCAS
			}
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// notProcessed reports whether err says the write was not done: nobody took
// it, or no leader could.
func notProcessed(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) || (errors.As(err, &api) && api.Code == 503)
}

// casError turns the answers of a lost compare-and-set into errCAS: 10071 on
// one copy, and 10164 on several (a concurrent write of the key in flight).
func casError(err error) error {
	var api *jetstream.APIError
	if errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return errCAS
	}
	return err
}

// remove deletes a key (no error when it does not exist); its delete marker
// goes away after a minute where the bucket allows it.
func (s *JetStream) remove(ctx context.Context, b *bucket, key string, opts ...jetstream.KVDeleteOpt) error {
	if b.ttl {
		opts = append(opts, jetstream.PurgeTTL(time.Minute))
	}
	return jsRetry(ctx, "delete from "+b.name, func(ctx context.Context) error {
		err := b.kv.Purge(ctx, key, opts...)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return errCAS
		}
		return casError(err)
	})
}

// ---- sessions, tickets, users, media, uploads ----

func (s *JetStream) PutSession(sess Session) error {
	if !sess.Expires.After(time.Now()) { // stored until the past: nothing left to keep
		return s.DeleteSession(sess.ID)
	}
	return s.putJSON(s.sessions, sess.ID, sess, sess.Expires)
}

// Session reads from the leader of the sessions bucket: a logout or an
// expiry on one node holds on every node at once (a replica may lag by
// milliseconds).
func (s *JetStream) Session(id string) (Session, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	data, _, err := s.get(ctx, s.sessions, token(id), readLeader)
	if err != nil {
		return Session{}, err
	}
	var sess Session
	if err := json.Unmarshal(data, &sess); err != nil {
		return Session{}, err
	}
	if !sess.Expires.After(time.Now()) {
		return Session{}, ErrNotFound
	}
	return sess, nil
}

func (s *JetStream) DeleteSession(id string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.remove(ctx, s.sessions, token(id))
}

func (s *JetStream) SessionUser(id string) (Session, User, error) {
	sess, err := s.Session(id)
	if err != nil {
		return Session{}, User{}, err
	}
	u, err := s.User(sess.UID)
	if err != nil {
		return Session{}, User{}, err
	}
	return sess, u, nil
}

func (s *JetStream) PutTicket(t Ticket) error {
	if !t.Expires.After(time.Now()) {
		return errors.New("ticket already expired")
	}
	return s.putJSON(s.tickets, t.ID, t, t.Expires)
}

// TakeTicket reads the ticket and deletes it only if it is still that
// revision: of concurrent takers on any nodes, one deletes it.
func (s *JetStream) TakeTicket(id string) (Ticket, error) {
	if id == "" {
		return Ticket{}, ErrNotFound
	}
	ctx, cancel := s.ctx()
	defer cancel()
	data, rev, err := s.get(ctx, s.tickets, token(id), readLeader)
	if err != nil {
		return Ticket{}, err
	}
	var t Ticket
	if err := json.Unmarshal(data, &t); err != nil {
		return Ticket{}, err
	}
	if err := s.remove(ctx, s.tickets, token(id), jetstream.LastRevision(rev)); err != nil {
		if errors.Is(err, errCAS) { // another taker was first
			return Ticket{}, ErrNotFound
		}
		return Ticket{}, err
	}
	if !t.Expires.After(time.Now()) {
		return Ticket{}, ErrNotFound
	}
	return t, nil
}

func (s *JetStream) User(uid string) (User, error) {
	var u User
	err := s.getJSON(s.users, uid, &u)
	return u, err
}

func (s *JetStream) UserByOpenID(openID string) (User, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	uid, _, err := s.get(ctx, s.openIDs, token(openID), readLeader)
	if err != nil {
		return User{}, err
	}
	u, err := s.User(string(uid))
	if err == nil && u.OpenID != openID { // the user moved to another openId since
		return User{}, ErrNotFound
	}
	return u, err
}

// PutUser writes the user, then its openId binding: a reader that finds the
// binding finds the user.
func (s *JetStream) PutUser(u User) error {
	val, err := json.Marshal(u)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.put(ctx, s.users, token(u.UID), val, time.Time{}); err != nil {
		return err
	}
	if u.OpenID == "" {
		return nil
	}
	return s.put(ctx, s.openIDs, token(u.OpenID), []byte(u.UID), time.Time{})
}

// EditUser changes the user with a compare-and-set on its record, read again
// when another write came first.
func (s *JetStream) EditUser(uid string, edit func(*User)) (User, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	key := token(uid)
	for {
		if err := ctx.Err(); err != nil {
			return User{}, fmt.Errorf("edit user: the record kept changing: %w", err)
		}
		data, rev, err := s.get(ctx, s.users, key, readLeader)
		if err != nil {
			return User{}, err
		}
		var u User
		if err := json.Unmarshal(data, &u); err != nil {
			return User{}, fmt.Errorf("user %s: %w", uid, err)
		}
		edit(&u)
		u.UID = uid
		val, err := json.Marshal(u)
		if err != nil {
			return User{}, err
		}
		if err := s.cas(ctx, s.users, key, val, rev); errors.Is(err, errCAS) {
			continue
		} else if err != nil {
			return User{}, err
		}
		if u.OpenID != "" {
			if err := s.put(ctx, s.openIDs, token(u.OpenID), []byte(uid), time.Time{}); err != nil {
				return User{}, err
			}
		}
		return u, nil
	}
}

func (s *JetStream) PutLogin(u User, sess Session) error {
	if !sess.Expires.After(time.Now()) {
		return errors.New("session already expired")
	}
	if err := s.PutUser(u); err != nil {
		return err
	}
	return s.putJSON(s.sessions, sess.ID, sess, sess.Expires)
}

// LoginOpenID binds openID with compare-and-set: a fresh user is written
// first, then the binding only if it is unchanged since it was read; the
// loser of a race deletes its user and logs in as the winner's. An existing
// user is edited with compare-and-set on its own record too.
func (s *JetStream) LoginOpenID(openID string, fresh User, edit func(*User), sess Session) (User, Session, error) {
	if openID == "" {
		return User{}, Session{}, errors.New("login without an openId")
	}
	if !sess.Expires.After(time.Now()) {
		return User{}, Session{}, errors.New("session already expired")
	}
	ctx, cancel := s.ctx()
	defer cancel()
	okey := token(openID)
	for {
		if err := ctx.Err(); err != nil {
			return User{}, Session{}, fmt.Errorf("login: the openId's record kept changing: %w", err)
		}
		bound, brev, err := s.get(ctx, s.openIDs, okey, readLeader)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return User{}, Session{}, err
		}
		var (
			u    User
			urev uint64
		)
		if err == nil {
			data, rev, err := s.get(ctx, s.users, token(string(bound)), readLeader)
			switch {
			case err == nil:
				if err := json.Unmarshal(data, &u); err != nil {
					return User{}, Session{}, err
				}
				urev = rev
			case !errors.Is(err, ErrNotFound):
				return User{}, Session{}, err
			}
		}
		if urev != 0 && u.OpenID == openID { // the bound user
			if edit != nil {
				edit(&u)
				val, err := json.Marshal(u)
				if err != nil {
					return User{}, Session{}, err
				}
				if err := s.cas(ctx, s.users, token(u.UID), val, urev); errors.Is(err, errCAS) {
					continue
				} else if err != nil {
					return User{}, Session{}, err
				}
			}
		} else { // none, or a stale binding: the fresh user takes it
			u = fresh
			u.OpenID = openID
			if edit != nil {
				edit(&u)
			}
			val, err := json.Marshal(u)
			if err != nil {
				return User{}, Session{}, err
			}
			if err := s.put(ctx, s.users, token(u.UID), val, time.Time{}); err != nil {
				return User{}, Session{}, err
			}
			if err := s.cas(ctx, s.openIDs, okey, []byte(u.UID), brev); err != nil {
				if rerr := s.remove(ctx, s.users, token(u.UID)); rerr != nil {
					s.log.Warn("login: an unused user record stays", "uid", u.UID, "err", rerr)
				}
				if errors.Is(err, errCAS) {
					continue
				}
				return User{}, Session{}, err
			}
		}
		sess.UID = u.UID
		val, err := json.Marshal(sess)
		if err != nil {
			return User{}, Session{}, err
		}
		if err := s.put(ctx, s.sessions, token(sess.ID), val, sess.Expires); err != nil {
			return User{}, Session{}, err
		}
		return u, sess, nil
	}
}

func (s *JetStream) PutMedia(m Media) error { return s.putJSON(s.media, m.ID, m, time.Time{}) }

func (s *JetStream) Media(id string) (Media, error) {
	var m Media
	err := s.getJSON(s.media, id, &m)
	return m, err
}

// AddUpload rewrites the user's one record (every interval of theirs, oldest
// first) with compare-and-set, so that uploads on several nodes all count.
func (s *JetStream) AddUpload(uid string, at time.Time, n int64, forget time.Time) error {
	ctx, cancel := s.ctx()
	defer cancel()
	key := token(uid)
	mode := readNear
	for {
		data, rev, err := s.get(ctx, s.uploads, key, mode)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		recs, err := decodeUploads(data)
		if err != nil {
			return fmt.Errorf("upload record of %s: %w", uid, err)
		}
		recs = slices.DeleteFunc(recs, func(u Upload) bool { return u.At.Before(forget) })
		i, found := slices.BinarySearchFunc(recs, at, func(u Upload, t time.Time) int { return u.At.Compare(t) })
		if found {
			recs[i].Bytes += n
		} else {
			recs = slices.Insert(recs, i, Upload{At: at, Bytes: n})
		}
		err = s.cas(ctx, s.uploads, key, encodeUploads(recs), rev)
		if !errors.Is(err, errCAS) {
			return err
		}
		mode = readLeader
		if ctx.Err() != nil {
			return fmt.Errorf("upload record of %s kept changing: %w", uid, ctx.Err())
		}
	}
}

func (s *JetStream) Uploads(uid string, since time.Time) ([]Upload, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	data, _, err := s.get(ctx, s.uploads, token(uid), readLeader)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	recs, err := decodeUploads(data)
	if err != nil {
		return nil, fmt.Errorf("upload record of %s: %w", uid, err)
	}
	i, _ := slices.BinarySearchFunc(recs, since, func(u Upload, t time.Time) int { return u.At.Compare(t) })
	return recs[i:], nil
}

// An upload record is 16 bytes: unix nanoseconds and bytes, big-endian int64s.
func encodeUploads(recs []Upload) []byte {
	b := make([]byte, 0, 16*len(recs))
	for _, r := range recs {
		b = binary.BigEndian.AppendUint64(b, uint64(r.At.UnixNano()))
		b = binary.BigEndian.AppendUint64(b, uint64(r.Bytes))
	}
	return b
}

func decodeUploads(b []byte) ([]Upload, error) {
	if len(b)%16 != 0 {
		return nil, fmt.Errorf("%d bytes, not a multiple of 16", len(b))
	}
	out := make([]Upload, 0, len(b)/16)
	for ; len(b) > 0; b = b[16:] {
		out = append(out, Upload{
			At:    time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC(),
			Bytes: int64(binary.BigEndian.Uint64(b[8:])),
		})
	}
	return out, nil
}

// ---- retries ----

// jsRetry runs f until it succeeds, ctx ends, or it fails in a way waiting
// does not cure.
func jsRetry(ctx context.Context, what string, f func(context.Context) error) error {
	return jsRetryEach(ctx, what, time.Second, f)
}

// readAttempt bounds a first read of a stream's leader: a read is answered in
// milliseconds, but one sent to a leader that is stepping down gets no answer
// at all, and the room waiting for it would stall for a whole attempt.
const readAttempt = 200 * time.Millisecond

// jsRetryEach is jsRetry with attempts of the given length, doubled (up to a
// second) after each one that timed out.
func jsRetryEach(ctx context.Context, what string, attempt time.Duration, f func(context.Context) error) error {
	wait := 5 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := f(actx)
		cancel()
		if err == nil || !jsTransient(err) {
			return err
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			attempt = min(2*attempt, time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// jsRetryCreate is jsRetry for making a stream or bucket, where "stream not
// found" is transient too: several nodes create the same one at once, and a
// create that lost the race updates a stream the cluster does not show yet.
func jsRetryCreate(ctx context.Context, what string, f func(context.Context) error) error {
	return jsRetry(ctx, what, func(ctx context.Context) error {
		err := f(ctx)
		var api *jetstream.APIError
		if errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamNotFound {
			return creating{err}
		}
		return err
	})
}

// creating marks an error of a stream being made, retried by jsRetryCreate.
type creating struct{ error }

func (c creating) Unwrap() error { return c.error }

// jsTransient reports whether err may go away by itself: no quorum or no
// leader yet (an election takes about 5 s), a timeout, 10163, no suitable
// peers for placement (10005, while the nodes learn of each other).
func jsTransient(err error) bool {
	if errors.As(err, new(creating)) {
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.Code == 503 || api.Code == 408 || api.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled ||
			api.ErrorCode == 10005 || strings.Contains(api.Description, "insufficient resources") // peers not known yet
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrJetStreamNotEnabled)
}
