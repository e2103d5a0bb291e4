package persistence

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vlogBytes is the size of the store's value-log files.
func vlogBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".vlog") {
			fi, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			n += fi.Size()
		}
	}
	return n
}

// Message bodies live in the value log: under retention (old messages
// trimmed as new ones come) the value-log GC keeps its disk bounded.
func TestRetentionKeepsValueLogBounded(t *testing.T) {
	mem, vlog := memTableSize, valueLogFileSize
	memTableSize, valueLogFileSize = 2<<20, 1<<20
	t.Cleanup(func() { memTableSize, valueLogFileSize = mem, vlog })
	dir := t.TempDir()
	s, err := OpenBadger(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const keep, total = 1000, 200000       // 20 MB of 100 B bodies written, 100 kB kept
	body := bytes.Repeat([]byte{'m'}, 100) // Badger copies what it stores
	batch := make([]Message, 1000)
	for id := uint64(1); id <= total; id += uint64(len(batch)) {
		for i := range batch {
			batch[i] = Message{ID: id + uint64(i), Data: body}
		}
		if err := s.AppendMessages("r", batch); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TrimMessages("r", id+uint64(len(batch))-keep); err != nil {
			t.Fatal(err)
		}
	}
	// Unreclaimed, the value log holds all 20 MB. What the deleted keys point
	// to is freed once their compaction has run: the GC's turns (every gcEvery
	// in the server) catch up with it.
	var n int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s.collect()
		if n = vlogBytes(t, dir); n <= 8<<20 {
			break
		}
	}
	t.Logf("value log %d bytes", n)
	if n > 8<<20 {
		t.Errorf("value log %d bytes after writing 20 MB, keeping 100 kB and 10 s of GC turns", n)
	}
	got, err := s.MessagesAfter("r", 0, 2*keep)
	if err != nil || len(got) != keep || got[0].ID != total-keep+1 || !bytes.Equal(got[keep-1].Data, body) {
		t.Fatalf("after the GC: %d messages, err %v; want the last %d whole", len(got), err, keep)
	}
}
