package persistence_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/pandachat/pandachat/persistence"
)

func openBadger(t *testing.T, dir string, o persistence.Options) *persistence.Badger {
	t.Helper()
	s, err := persistence.OpenBadger(dir, o)
	if err != nil {
		t.Fatalf("OpenBadger: %v", err)
	}
	return s
}

// TestBadgerReopen: everything written before Close is there after reopening,
// and ids continue after the highest stored one.
func TestBadgerReopen(t *testing.T) {
	for _, o := range []persistence.Options{{}, {SyncWrites: true}} {
		dir := t.TempDir()
		s := openBadger(t, dir, o)
		sess := persistence.Session{ID: "s1", Skey: "k", UID: "u1", SessionKey: "sk", Expires: future(time.Hour)}
		user := persistence.User{UID: "u1", OpenID: "o1", Profile: persistence.Profile{NickName: "n"}, Created: future(0)}
		media := persistence.Media{ID: "m1", Owner: "u1", MIME: "image/gif", Size: 10, Created: future(0)}
		appendAll(t, s, "lobby", msgs("lobby", 1, 5), msgs("lobby", 6, 7))
		appendAll(t, s, "lobby-2", msgs("lobby-2", 1, 2))
		at := time.Date(2024, 5, 6, 7, 8, 0, 0, time.UTC)
		for _, err := range []error{s.PutSession(sess), s.PutUser(user), s.PutMedia(media), s.AddUpload("u1", at, 1234, time.Time{}), s.Sync()} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.TrimMessages("lobby", 3); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		s = openBadger(t, dir, o)
		checkLastID(t, s, "lobby", 7)
		checkLastID(t, s, "lobby-2", 2)
		got, err := s.MessagesAfter("lobby", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		checkIDs(t, "lobby after reopen", "lobby", got, 3, 7)
		if got, err := s.Session("s1"); err != nil || !reflect.DeepEqual(got, sess) {
			t.Errorf("Session after reopen = %+v, %v; want %+v", got, err, sess)
		}
		if got, err := s.UserByOpenID("o1"); err != nil || !reflect.DeepEqual(got, user) {
			t.Errorf("UserByOpenID after reopen = %+v, %v; want %+v", got, err, user)
		}
		if got, err := s.Media("m1"); err != nil || !reflect.DeepEqual(got, media) {
			t.Errorf("Media after reopen = %+v, %v; want %+v", got, err, media)
		}
		if got, err := s.Uploads("u1", time.Time{}); err != nil || len(got) != 1 || !got[0].At.Equal(at) || got[0].Bytes != 1234 {
			t.Errorf("Uploads after reopen = %v, %v; want 1234 bytes at %v", got, err, at)
		}
		appendAll(t, s, "lobby", msgs("lobby", 8, 8))
		got, _ = s.MessagesBefore("lobby", math.MaxUint64, 100)
		checkIDs(t, "lobby after appending past the reopen", "lobby", got, 3, 8)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

// TestBadgerSessionExpiry: a session is readable until its Expires and gone
// afterwards, from the Store and from Badger itself (no key left behind).
func TestBadgerSessionExpiry(t *testing.T) {
	s := openBadger(t, t.TempDir(), persistence.Options{})
	defer s.Close()
	// Not on a whole second: Badger's own TTL has 1 s resolution.
	expires := time.Now().Add(1100 * time.Millisecond).UTC()
	if err := s.PutSession(persistence.Session{ID: "short", Skey: "k", UID: "u", Expires: expires}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := s.Session("short")
		done := time.Now()
		if err == nil && !done.Before(expires) {
			t.Fatalf("Session returned at %v, after its expiry %v", done, expires)
		}
		if err != nil {
			if !errors.Is(err, persistence.ErrNotFound) {
				t.Fatal(err)
			}
			if done.Before(expires) {
				t.Fatalf("Session gone at %v, before its expiry %v", done, expires)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for !rawKeyGone(t, s, "s/short") { // Badger drops the key itself, at most a second later
		time.Sleep(50 * time.Millisecond)
	}
}

func rawKeyGone(t *testing.T, s *persistence.Badger, key string) bool {
	err := s.DB().View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte(key))
		return err
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return err != nil
}

// TestBadgerDirectoryInUse: a second open of a directory in use is an error
// that says so, never a panic, and the first store keeps working.
func TestBadgerDirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir, persistence.Options{})
	defer s.Close()
	second, err := openNoPanic(dir)
	if err == nil {
		second.Close()
		t.Fatal("second OpenBadger on the same directory succeeded")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %q does not say the directory is in use", err)
	}
	appendAll(t, s, "r", msgs("r", 1, 1))
	checkLastID(t, s, "r", 1)
}

func openNoPanic(dir string) (s *persistence.Badger, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("panic")
			panic(r)
		}
	}()
	return persistence.OpenBadger(dir, persistence.Options{})
}

// A directory the store cannot use is refused with an error that names it.
// The cases run as root too (CI does): root ignores permissions, so a
// read-only directory is tested only where permissions hold, and what always
// runs puts a file where a directory must be, or a directory where one of
// Badger's files must be.
func TestBadgerUnusableDirectory(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	// blocked is a store directory with a directory in the place of one of Badger's files.
	blocked := func(name string) string {
		dir := filepath.Join(base, "blocked-"+name)
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	type row struct{ name, dir string }
	rows := []row{
		{"empty path", ""},
		{"regular file", file},
		{"below a regular file", filepath.Join(file, "data")},
		{"a directory for the lock file", blocked("LOCK")},
		{"a directory for the manifest", blocked("MANIFEST")},
		{"a directory for the value log", blocked("000001.vlog")},
	}
	readOnly := filepath.Join(base, "ro")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(readOnly, 0o700) })
	if !writableAnyway(readOnly) {
		rows = append(rows, row{"read-only directory", readOnly}, row{"below a read-only directory", filepath.Join(readOnly, "data")})
	}
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			s, err := openNoPanic(tt.dir)
			if err == nil {
				s.Close()
				t.Fatalf("OpenBadger(%s) succeeded", tt.name)
			}
			if tt.dir != "" && !strings.Contains(err.Error(), tt.dir) {
				t.Errorf("error %q does not name the directory", err)
			}
		})
	}
}

// writableAnyway reports whether files can be made in dir although its mode
// says read-only (root ignores permissions).
func writableAnyway(dir string) bool {
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

// Rooms writing at the same moment share transactions; every room still gets
// exactly its own batches, in order, and its last id.
func TestGroupCommitManyRooms(t *testing.T) {
	s, err := persistence.OpenBadger(t.TempDir(), persistence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const rooms, batches, per = 40, 50, 3
	var wg sync.WaitGroup
	for r := 0; r < rooms; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			room := fmt.Sprint("room", r)
			for b := 0; b < batches; b++ {
				var msgs []persistence.Message
				for i := 1; i <= per; i++ {
					id := uint64(b*per + i)
					msgs = append(msgs, persistence.Message{ID: id, Data: []byte(fmt.Sprintf(`{"id":%d,"room":%q}`, id, room)), CID: fmt.Sprint("c", id)})
				}
				if err := s.AppendMessages(room, msgs); err != nil {
					t.Errorf("%s batch %d: %v", room, b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for r := 0; r < rooms; r++ {
		room := fmt.Sprint("room", r)
		if last, err := s.LastID(room); err != nil || last != batches*per {
			t.Fatalf("%s: last id %d, %v; want %d", room, last, err, batches*per)
		}
		got, err := s.MessagesAfter(room, 0, 1000)
		if err != nil || len(got) != batches*per {
			t.Fatalf("%s: %d messages, %v", room, len(got), err)
		}
		for i, m := range got {
			want := fmt.Sprintf(`{"id":%d,"room":%q}`, i+1, room)
			if m.ID != uint64(i+1) || string(m.Data) != want || m.CID != fmt.Sprint("c", i+1) {
				t.Fatalf("%s message %d: %d %s %q", room, i, m.ID, m.Data, m.CID)
			}
		}
	}
}

// A write after Close is refused at once, never left waiting.
func TestAppendAfterClose(t *testing.T) {
	s, err := persistence.OpenBadger(t.TempDir(), persistence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.AppendMessages("r", []persistence.Message{{ID: 1, Data: []byte(`{}`)}}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a write after Close succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write after Close is still waiting")
	}
}
