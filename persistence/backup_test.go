package persistence

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const mediaID = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"

// fill writes one of everything the server keeps: a session, a user, a room's
// messages and a media file with its metadata.
func fill(t *testing.T, s *Badger, mediaDir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutUser(User{UID: "u1", OpenID: "open-1", Profile: Profile{NickName: "alice"}}))
	must(s.PutSession(Session{ID: "sess-1", Skey: "skey-1", UID: "u1", Expires: time.Now().Add(time.Hour)}))
	must(s.AppendMessages("lobby", []Message{{ID: 1, Data: []byte(`{"id":1}`)}, {ID: 2, Data: []byte(`{"id":2}`)}}))
	must(s.PutMedia(Media{ID: mediaID, Owner: "u1", MIME: "image/png", Size: 5}))
	p := filepath.Join(mediaDir, mediaID[:2], mediaID[2:])
	must(os.MkdirAll(filepath.Dir(p), 0o750))
	must(os.WriteFile(p, []byte("bytes"), 0o640))
	must(os.MkdirAll(filepath.Join(mediaDir, "tmp"), 0o750)) // staging: never backed up
	must(os.WriteFile(filepath.Join(mediaDir, "tmp", "partial"), []byte("x"), 0o640))
}

func backupOf(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	s, err := OpenBadger(filepath.Join(dir, "store"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fill(t, s, filepath.Join(dir, "media"))
	var buf bytes.Buffer
	man, err := WriteBackup(&buf, s, filepath.Join(dir, "media"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if man.Media != 1 || man.Version == 0 {
		t.Fatalf("manifest %+v, want 1 media file and a store version", man)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".backup-*")); len(left) > 0 {
		t.Fatalf("temp files left behind: %v", left)
	}
	return buf.Bytes()
}

func TestBackupRoundTrip(t *testing.T) {
	archive := backupOf(t)
	dir := t.TempDir()
	storeDir, mediaDir := filepath.Join(dir, "store"), filepath.Join(dir, "media")
	if _, err := RestoreBackup(bytes.NewReader(archive), storeDir, mediaDir); err != nil {
		t.Fatal(err)
	}
	s, err := OpenBadger(storeDir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if sess, err := s.Session("sess-1"); err != nil || sess.Skey != "skey-1" || sess.UID != "u1" {
		t.Errorf("session: %+v, %v", sess, err)
	}
	if u, err := s.UserByOpenID("open-1"); err != nil || u.Profile.NickName != "alice" {
		t.Errorf("user: %+v, %v", u, err)
	}
	if last, err := s.LastID("lobby"); err != nil || last != 2 {
		t.Errorf("last id %d, %v; want 2", last, err)
	}
	if msgs, err := s.MessagesAfter("lobby", 0, 10); err != nil || len(msgs) != 2 || string(msgs[1].Data) != `{"id":2}` {
		t.Errorf("messages %v, %v", msgs, err)
	}
	if m, err := s.Media(mediaID); err != nil || m.Size != 5 {
		t.Errorf("media metadata %+v, %v", m, err)
	}
	if b, err := os.ReadFile(filepath.Join(mediaDir, mediaID[:2], mediaID[2:])); err != nil || string(b) != "bytes" {
		t.Errorf("media bytes %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(mediaDir, "tmp", "partial")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging file restored: %v", err)
	}
	// A restored session keeps its expiry: the store drops it on time.
	sess, _ := s.Session("sess-1")
	if d := time.Until(sess.Expires); d <= 0 || d > time.Hour {
		t.Errorf("restored session expires in %s", d)
	}
}

func TestRestoreRefusesANonEmptyDirectory(t *testing.T) {
	archive := backupOf(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "store"), 0o750)
	os.WriteFile(filepath.Join(dir, "store", "MANIFEST"), []byte("keep me"), 0o640)
	_, err := RestoreBackup(bytes.NewReader(archive), filepath.Join(dir, "store"), filepath.Join(dir, "media"))
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "store", "MANIFEST")); string(b) != "keep me" {
		t.Fatal("existing data was touched")
	}
}

func TestRestoreRejectsBadArchives(t *testing.T) {
	good := backupOf(t)
	// withExtra appends one entry to the good archive (before its end marker).
	withExtra := func(name string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tr := tar.NewReader(bytes.NewReader(good))
		for {
			hdr, err := tr.Next()
			if err != nil {
				break
			}
			tw.WriteHeader(hdr)
			b := new(bytes.Buffer)
			b.ReadFrom(tr)
			tw.Write(b.Bytes())
		}
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"empty", nil, "not a pandachat backup"},
		{"not tar", []byte(strings.Repeat("garbage ", 200)), "not a pandachat backup"},
		{"truncated", good[:len(good)/2], "restore"},
		{"path escape", withExtra("media/../../evil"), "unexpected entry"},
		{"absolute path", withExtra("/etc/evil"), "unexpected entry"},
		{"stray file", withExtra("notes.txt"), "unexpected entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := RestoreBackup(bytes.NewReader(tc.archive), filepath.Join(dir, "store"), filepath.Join(dir, "media"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if e.Name() != "store" && e.Name() != "media" {
					t.Errorf("%s written outside the store and media directories", e.Name())
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "evil")); err == nil {
				t.Fatal("an entry was written outside the media directory")
			}
		})
	}
}

// withManifest rewrites the manifest of archive with edit, keeping every other entry.
func withManifest(t *testing.T, archive []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == backupManifest {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			edit(m)
			body, _ = json.Marshal(m)
			hdr.Size = int64(len(body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// An archive of a format this version does not know is refused before anything
// is written; the manifest's media count is checked against the archive.
func TestRestoreChecksTheManifest(t *testing.T) {
	good := backupOf(t)
	for _, tc := range []struct {
		name string
		edit func(m map[string]any)
		want string // "" restores
	}{
		{"as written", func(map[string]any) {}, ""},
		{"format 2", func(m map[string]any) { m["format"] = 2 }, "backup format 2; this version reads format 1"},
		{"format 0", func(m map[string]any) { m["format"] = 0 }, "backup format 0"},
		{"no format", func(m map[string]any) { delete(m, "format") }, "backup format 0"},
		{"format as text", func(m map[string]any) { m["format"] = "1" }, "manifest"},
		{"fewer media than the manifest says", func(m map[string]any) { m["media"] = 2 }, "manifest says 2"},
		{"more media than the manifest says", func(m map[string]any) { delete(m, "media") }, "archive has 1 media files, manifest says 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			storeDir, mediaDir := filepath.Join(dir, "store"), filepath.Join(dir, "media")
			man, err := RestoreBackup(bytes.NewReader(withManifest(t, good, tc.edit)), storeDir, mediaDir)
			if tc.want == "" {
				if err != nil || man.Format != 1 || man.Media != 1 {
					t.Fatalf("restore: %+v, %v", man, err)
				}
				if _, err := os.Stat(filepath.Join(mediaDir, mediaID[:2], mediaID[2:])); err != nil {
					t.Fatalf("media not restored: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(tc.want, "format") || tc.want == "manifest" {
				for _, d := range []string{storeDir, mediaDir} {
					if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s created for a refused archive: %v", d, err)
					}
				}
			}
		})
	}
}

// addMedia writes a media file named id under mediaDir with its metadata.
func addMedia(t *testing.T, s *Badger, mediaDir, id string, body []byte) {
	t.Helper()
	if err := s.PutMedia(Media{ID: id, Owner: "u1", MIME: "image/png", Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(mediaDir, id[:2], id[2:])
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, body, 0o640); err != nil {
		t.Fatal(err)
	}
}

// Every media file is in the archive, which ends with tar's end marker; files
// in the media directory that are not media are left out; a server that never
// stored an upload (no media directory) backs up too; a restore goes into
// directories that exist and are empty as well as into new ones.
func TestBackupMediaFiles(t *testing.T) {
	for _, n := range []int{0, 3} {
		t.Run(fmt.Sprintf("%d media files", n), func(t *testing.T) {
			dir := t.TempDir()
			s, err := OpenBadger(filepath.Join(dir, "store"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			mediaDir := filepath.Join(dir, "media")
			var ids []string
			for i := range n {
				id := fmt.Sprintf("%02x", i) + strings.Repeat("e", 62)
				addMedia(t, s, mediaDir, id, bytes.Repeat([]byte{byte(i)}, 100+i))
				ids = append(ids, id)
			}
			if n > 0 { // not media: wrong case, wrong length, wrong place
				os.WriteFile(filepath.Join(mediaDir, "00", strings.Repeat("E", 62)), []byte("x"), 0o640)
				os.WriteFile(filepath.Join(mediaDir, "00", strings.Repeat("e", 61)), []byte("x"), 0o640)
				os.WriteFile(filepath.Join(mediaDir, "notes.txt"), []byte("x"), 0o640)
			}
			var buf bytes.Buffer
			man, err := WriteBackup(&buf, s, mediaDir, dir)
			if err != nil || man.Media != n {
				t.Fatalf("backup: %+v, %v; want %d media files", man, err, n)
			}
			if b := buf.Bytes(); len(b) < 1024 || !bytes.Equal(b[len(b)-1024:], make([]byte, 1024)) {
				t.Fatal("the archive does not end with tar's end marker")
			}
			to := t.TempDir()
			storeTo, mediaTo := filepath.Join(to, "store"), filepath.Join(to, "media")
			for _, d := range []string{storeTo, mediaTo} {
				if err := os.Mkdir(d, 0o750); err != nil {
					t.Fatal(err)
				}
			}
			if man, err := RestoreBackup(bytes.NewReader(buf.Bytes()), storeTo, mediaTo); err != nil || man.Media != n {
				t.Fatalf("restore into empty directories: %+v, %v", man, err)
			}
			for i, id := range ids {
				b, err := os.ReadFile(filepath.Join(mediaTo, id[:2], id[2:]))
				if err != nil || !bytes.Equal(b, bytes.Repeat([]byte{byte(i)}, 100+i)) {
					t.Errorf("media %s: %d bytes, %v", id, len(b), err)
				}
			}
			var got []string
			filepath.WalkDir(mediaTo, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					got = append(got, p)
				}
				return nil
			})
			if len(got) != n {
				t.Errorf("restored files %v, want the %d media files only", got, n)
			}
		})
	}
}

// A restore refuses entries that look like media but are not named as media.
func TestRestoreRefusesMisnamedMedia(t *testing.T) {
	good := backupOf(t)
	for _, name := range []string{
		"media/zz/" + strings.Repeat("g", 62),
		"media/AB/" + strings.Repeat("0", 62),
		"media/ab/" + strings.Repeat("0", 61),
		"media/abc/" + strings.Repeat("0", 61),
		"media/" + strings.Repeat("0", 64),
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tr := tar.NewReader(bytes.NewReader(good))
		for {
			hdr, err := tr.Next()
			if err != nil {
				break
			}
			body, _ := io.ReadAll(tr)
			tw.WriteHeader(hdr)
			tw.Write(body)
		}
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		dir := t.TempDir()
		_, err := RestoreBackup(bytes.NewReader(buf.Bytes()), filepath.Join(dir, "store"), filepath.Join(dir, "media"))
		if err == nil || !strings.Contains(err.Error(), "unexpected entry") {
			t.Errorf("%s: err = %v, want an unexpected entry", name, err)
		}
	}
}

// writeEntry notices a file that is shorter than the size it announced (a
// media file changed while the backup ran).
func TestWriteEntryShortFile(t *testing.T) {
	tw := tar.NewWriter(io.Discard)
	err := writeEntry(tw, "media/x", time.Now(), 10, strings.NewReader("12345"))
	if err == nil || !strings.Contains(err.Error(), "5 of 10 bytes") {
		t.Fatalf("err = %v, want 5 of 10 bytes", err)
	}
}
