package bench

import (
	"strings"
	"testing"
)

func TestParseFrame(t *testing.T) {
	msg := string(AppendMessage(nil, 1700000000123456789, 7, 42, 100))
	content := msg[strings.Index(msg, `"content":`):]
	for _, tc := range []struct {
		name  string
		frame string
		want  Frame
	}{
		{"system", `{"type":"system","num":12}`, Frame{Kind: KindSystem, Num: 12}},
		{"remote with stamp", `{"type":"remote","id":17,"number":3,"time":1,"uid":"u","nickName":"n","avatarUrl":"","text":true,` + content,
			Frame{Kind: KindRemote, ID: 17, Sent: 1700000000123456789, Sender: 7, Seq: 42, Stamp: true}},
		{"user, fields reordered", `{"content":"5.6.7.xx","id":9,"type":"user"}`, Frame{Kind: KindUser, ID: 9, Sent: 5, Sender: 6, Seq: 7, Stamp: true}},
		{"uid before id is not the id", `{"type":"remote","uid":"99","id":3,"content":"hello"}`, Frame{Kind: KindRemote, ID: 3}},
		{"foreign content", `{"type":"remote","id":4,"content":"12.x"}`, Frame{Kind: KindRemote, ID: 4}},
		{"stamp cut short", `{"type":"remote","id":4,"content":"12.3"}`, Frame{Kind: KindRemote, ID: 4}},
		{"message without id", `{"type":"remote","content":"1.2.3."}`, Frame{Kind: KindBad}},
		{"id not a number", `{"type":"user","id":"x"}`, Frame{Kind: KindBad}},
		{"error frame", `{"type":"error","error":"ERR_BAD_MESSAGE","message":"m"}`, Frame{Kind: KindError}},
		{"session error", `{"F2C224D4-2BCE-4C64-AF9F-A6D872000D1A":1,"error":"ERR_INVALID_SESSION"}`, Frame{Kind: KindError}},
		{"presence", `{"type":"presence","num":2,"event":"join"}`, Frame{Kind: KindOther}},
		{"not an object", `[1,2]`, Frame{Kind: KindBad}},
		{"empty", ``, Frame{Kind: KindBad}},
		{"truncated", `{"type":"remote","id":1`, Frame{Kind: KindBad}},
		{"type at the end", `{"type":"}`, Frame{Kind: KindOther}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseFrame([]byte(tc.frame)); got != tc.want {
				t.Errorf("ParseFrame(%s)\n got %+v\nwant %+v", tc.frame, got, tc.want)
			}
		})
	}
}

func TestAppendMessageSize(t *testing.T) {
	for _, size := range []int{1, 100, 1024} {
		m := string(AppendMessage(nil, 1700000000123456789, 1, 1, size))
		c := strings.TrimSuffix(strings.TrimPrefix(m, `{"text":true,"content":"`), `"}`)
		if len(c) < size || (size > 40 && len(c) != size) {
			t.Errorf("size %d: content is %d bytes", size, len(c))
		}
	}
}

func TestParseFrameDoesNotAllocate(t *testing.T) {
	b := []byte(`{"type":"remote","id":17,"number":3,"time":1,"uid":"u","nickName":"n","avatarUrl":"","text":true,"content":"1700000000123456789.7.42.xxxx"}`)
	if n := testing.AllocsPerRun(1000, func() { _ = ParseFrame(b) }); n != 0 {
		t.Fatalf("ParseFrame allocates %v times", n)
	}
}

func TestSeqCheck(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		ids                  []uint64
		recv, gaps, dups, oo uint64
	}{
		{"in order from any start", []uint64{5, 6, 7, 8}, 4, 0, 0, 0},
		{"gap", []uint64{1, 2, 5, 6}, 4, 2, 0, 0},
		{"duplicate", []uint64{1, 2, 2, 3}, 3, 0, 1, 0},
		{"out of order", []uint64{1, 3, 2, 4}, 3, 1, 0, 1},
		{"old duplicate", []uint64{1, 2, 3, 1}, 3, 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c seqCheck
			for _, id := range tc.ids {
				c.observe(id)
			}
			if c.recv != tc.recv || c.gaps != tc.gaps || c.dups != tc.dups || c.ooo != tc.oo {
				t.Errorf("recv %d gaps %d dups %d ooo %d, want %d %d %d %d", c.recv, c.gaps, c.dups, c.ooo, tc.recv, tc.gaps, tc.dups, tc.oo)
			}
		})
	}
}

func BenchmarkParseFrame(b *testing.B) {
	f := []byte(`{"type":"remote","id":123456,"number":1000,"time":1700000000123,"uid":"u1","nickName":"b1","avatarUrl":"","text":true,"content":"` +
		"1700000000123456789.7.42." + strings.Repeat("x", 75) + `"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		_ = ParseFrame(f)
	}
}
