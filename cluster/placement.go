package cluster

// Owner picks the node that owns room among nodes by rendezvous (highest
// random weight) hashing: every node that sees the same node list picks the
// same owner, the order of the list does not matter, and when a node leaves
// only the rooms it owned move (each to the node that scored second for it).
// It returns "" when nodes is empty.
//
// Placement only spreads the rooms; it does not make a room's writer unique.
// Two nodes with different views of the live list can both think they own a
// room for a while: the store's expected-sequence check is what keeps ids
// unique (persistence.ErrConflict).
func Owner(room string, nodes []string) string {
	var (
		best  string
		score uint64
	)
	for i, n := range nodes {
		w := weight(n, room)
		if i == 0 || w > score || (w == score && n < best) {
			best, score = n, w
		}
	}
	return best
}

// weight is a stable 64-bit hash of (node, room): FNV-1a over both with a
// separator, finished with the splitmix64 mixer so that names that differ in
// one character still score far apart. It is the same in every process and
// every release: changing it moves rooms.
func weight(node, room string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(node); i++ {
		h = (h ^ uint64(node[i])) * prime
	}
	h = (h ^ 0xff) * prime // 0xff never occurs in UTF-8: "ab"+"c" and "a"+"bc" differ
	for i := 0; i < len(room); i++ {
		h = (h ^ uint64(room[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
