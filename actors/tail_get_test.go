package actors

import (
	"fmt"
	"testing"
)

// get finds exactly the ids the tail holds, wrapped or not, and set changes
// one in place.
func TestTailGet(t *testing.T) {
	var empty tail = newTail(3)
	if _, ok := empty.get(1); ok {
		t.Error("an empty tail has id 1")
	}
	for pushed, want := range map[int]string{2: "[1 2]", 5: "[3 4 5]", 6: "[4 5 6]"} {
		tl := newTail(3)
		for i := 1; i <= pushed; i++ {
			tl.push(tailMsg{id: uint64(i), uid: fmt.Sprint("u", i)})
		}
		var held []uint64
		for id := uint64(0); id <= 8; id++ {
			if m, ok := tl.get(id); ok {
				if m.id != id || m.uid != fmt.Sprint("u", id) {
					t.Errorf("pushed %d: get(%d) = %+v", pushed, id, m)
				}
				held = append(held, id)
			}
		}
		if fmt.Sprint(held) != want {
			t.Errorf("pushed %d: get finds %v, want %s", pushed, held, want)
		}
		last := uint64(pushed)
		tl.set(last, []byte("stub"))
		if m, _ := tl.get(last); string(m.data) != "stub" {
			t.Errorf("pushed %d: set(%d) left %q", pushed, last, m.data)
		}
	}
}
