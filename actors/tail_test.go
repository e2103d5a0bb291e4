package actors

import "testing"

func TestTail(t *testing.T) {
	rows := []struct {
		size, pushed int
		from         uint64
		want         []uint64
		ok           bool
	}{
		{size: 4, pushed: 0, from: 1, ok: false},
		{size: 4, pushed: 3, from: 1, want: []uint64{1, 2, 3}, ok: true},
		{size: 4, pushed: 3, from: 3, want: []uint64{3}, ok: true},
		{size: 4, pushed: 3, from: 4, want: nil, ok: true},
		{size: 4, pushed: 10, from: 6, ok: false},
		{size: 4, pushed: 10, from: 7, want: []uint64{7, 8, 9, 10}, ok: true},
		{size: 4, pushed: 10, from: 9, want: []uint64{9, 10}, ok: true},
		{size: 1024, pushed: 931, from: 346, ok: true},
		{size: 0, pushed: 5, from: 1, ok: false},
	}
	for _, r := range rows {
		tl := newTail(r.size)
		for i := 1; i <= r.pushed; i++ {
			tl.push(tailMsg{id: uint64(i)})
		}
		got, ok := tl.from(r.from)
		if ok != r.ok {
			t.Errorf("%+v: ok = %v", r, ok)
			continue
		}
		if r.want == nil && r.size == 1024 {
			if len(got) != r.pushed-int(r.from)+1 || got[0].id != r.from {
				t.Errorf("%+v: got %d messages starting %d", r, len(got), got[0].id)
			}
			continue
		}
		if len(got) != len(r.want) {
			t.Errorf("%+v: got %d messages, want %v", r, len(got), r.want)
			continue
		}
		for i := range got {
			if got[i].id != r.want[i] {
				t.Errorf("%+v: got[%d] = %d", r, i, got[i].id)
			}
		}
	}
}
