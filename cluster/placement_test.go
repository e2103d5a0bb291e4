package cluster

import (
	"fmt"
	"slices"
	"testing"
)

func rooms(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("room-%d", i)
	}
	return out
}

func TestOwnerEdgeCases(t *testing.T) {
	for _, tt := range []struct {
		name  string
		room  string
		nodes []string
		want  string
	}{
		{"no nodes", "lobby", nil, ""},
		{"empty list", "lobby", []string{}, ""},
		{"one node", "lobby", []string{"a"}, "a"},
		{"empty room name", "", []string{"a"}, "a"},
		{"same node twice", "lobby", []string{"a", "a"}, "a"},
	} {
		if got := Owner(tt.room, tt.nodes); got != tt.want {
			t.Errorf("%s: Owner(%q, %q) = %q, want %q", tt.name, tt.room, tt.nodes, got, tt.want)
		}
	}
}

// Every process and every release computes the same owner: the hash is
// fixed, not seeded. A change here moves rooms between nodes, which a rolling
// upgrade must not do silently.
func TestOwnerIsPinned(t *testing.T) {
	for _, tt := range []struct {
		node, room string
		want       uint64
	}{
		{"node-a", "lobby", 0xbe8245bd23741135},
		{"n1", "", 0xb32b9d3bfd8822a7},
	} {
		if got := weight(tt.node, tt.room); got != tt.want {
			t.Errorf("weight(%q, %q) = %#x, want %#x", tt.node, tt.room, got, tt.want)
		}
	}
	nodes := []string{"node-a", "node-b", "node-c"}
	for room, want := range map[string]string{"lobby": "node-a", "room-7": "node-a", "room-8": "node-b"} {
		if got := Owner(room, nodes); got != want {
			t.Errorf("Owner(%q) = %q, want %q", room, got, want)
		}
	}
	if weight("ab", "c") == weight("a", "bc") {
		t.Error(`weight("ab","c") == weight("a","bc"): node and room run together`)
	}
}

func TestOwnerIgnoresOrder(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	for _, room := range rooms(500) {
		want := Owner(room, nodes)
		perm := slices.Clone(nodes)
		slices.Reverse(perm)
		perm[0], perm[2] = perm[2], perm[0]
		if got := Owner(room, perm); got != want {
			t.Fatalf("Owner(%s) = %s for %v but %s for %v", room, want, nodes, got, perm)
		}
	}
}

// Rooms spread evenly: with 3 nodes and 30 000 rooms each node gets its third
// within a few percent.
func TestOwnerSpreadsRooms(t *testing.T) {
	nodes := []string{"node-a", "node-b", "node-c"}
	count := map[string]int{}
	all := rooms(30000)
	for _, r := range all {
		count[Owner(r, nodes)]++
	}
	for _, n := range nodes {
		share := float64(count[n]) / float64(len(all))
		if share < 0.30 || share > 0.37 {
			t.Errorf("node %s owns %.1f%% of the rooms, want about 33%%: %v", n, 100*share, count)
		}
	}
}

// When a node leaves, only its rooms move; when it comes back they return.
func TestOwnerMovesOnlyTheLeaversRooms(t *testing.T) {
	three := []string{"node-a", "node-b", "node-c"}
	two := []string{"node-a", "node-c"}
	moved := 0
	for _, r := range rooms(5000) {
		before, after := Owner(r, three), Owner(r, two)
		switch {
		case before == "node-b":
			moved++
			if after == "node-b" {
				t.Fatalf("room %s still on the node that left", r)
			}
		case before != after:
			t.Fatalf("room %s moved from %s to %s though %s is still there", r, before, after, before)
		}
		// And a new node takes rooms only for itself.
		four := append(slices.Clone(three), "node-d")
		if o := Owner(r, four); o != before && o != "node-d" {
			t.Fatalf("adding node-d moved room %s from %s to %s", r, before, o)
		}
	}
	if moved == 0 {
		t.Fatal("no room was owned by node-b")
	}
}
