package media

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
)

func newFiles(t *testing.T) files {
	f := files{dir: filepath.Join(t.TempDir(), "media")}
	if err := f.open(); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestStage(t *testing.T) {
	data := bytes.Repeat([]byte("panda"), 20000) // 100000 bytes, several copy buffers
	sum := sha256.Sum256(data)
	tests := []struct {
		name  string
		r     io.Reader
		limit int64
		check func(error) bool
	}{
		{"at the limit", bytes.NewReader(data), int64(len(data)), func(err error) bool { return err == nil }},
		{"one byte over", bytes.NewReader(data), int64(len(data)) - 1, func(err error) bool { return errors.Is(err, errTooLarge) }},
		{"client gone", iotest.TimeoutReader(bytes.NewReader(data)), 1 << 20, func(err error) bool {
			return errors.Is(err, iotest.ErrTimeout) && !errors.Is(err, errStorage)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFiles(t)
			st, err := f.stage(tt.r, tt.limit)
			if !tt.check(err) {
				t.Fatalf("stage: %v", err)
			}
			if err != nil {
				if left := storedFiles(t, f.dir); len(left) != 0 {
					t.Fatalf("left behind %v", left)
				}
				return
			}
			if st.id != hex.EncodeToString(sum[:]) || st.size != int64(len(data)) {
				t.Fatalf("staged %s, %d bytes", st.id, st.size)
			}
			if created, err := f.commit(st); err != nil || !created {
				t.Fatalf("commit = %v, %v", created, err)
			}
			if got := readFile(t, f.path(st.id)); !bytes.Equal(got, data) {
				t.Fatal("stored bytes differ")
			}
			if rel, _ := filepath.Rel(f.dir, f.path(st.id)); rel != st.id[:2]+string(filepath.Separator)+st.id[2:] {
				t.Fatalf("stored at %s", rel)
			}
		})
	}
}

func TestCommitSameBytes(t *testing.T) {
	f := newFiles(t)
	for i, want := range []bool{true, false} {
		st, err := f.stage(strings.NewReader("same bytes"), 100)
		if err != nil {
			t.Fatal(err)
		}
		if created, err := f.commit(st); err != nil || created != want {
			t.Fatalf("commit %d = %v, %v; want created=%v", i, created, err, want)
		}
	}
	if got := storedFiles(t, f.dir); len(got) != 1 {
		t.Fatalf("files %v, want one", got)
	}
}

func TestDiskFull(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, true},
		{storageErr("write", &fs.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}), true},
		{storageErr("write", &fs.PathError{Op: "open", Path: "x", Err: syscall.EACCES}), false},
		{syscall.EROFS, false},
		{io.ErrUnexpectedEOF, false},
	}
	for _, tt := range tests {
		if got := diskFull(tt.err); got != tt.want {
			t.Errorf("diskFull(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// A real ENOSPC from the kernel while staging leaves no temp file.
func TestStageDiskFull(t *testing.T) {
	f := newFiles(t)
	f.wrap = devFull(t)
	_, err := f.stage(strings.NewReader("bytes that will not fit"), 100)
	if !diskFull(err) || !errors.Is(err, errStorage) {
		t.Fatalf("stage: %v, want a disk-full storage error", err)
	}
	if left := storedFiles(t, f.dir); len(left) != 0 {
		t.Fatalf("left behind %v", left)
	}
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("/dev/full gone: %v", err)
	}
}

func TestValidID(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	for _, tt := range []struct {
		id   string
		want bool
	}{
		{id, true},
		{"", false},
		{id[:63], false},
		{id + "0", false},
		{strings.ToUpper(id), false},
		{"../" + id[3:], false},
		{id[:62] + "/x", false},
		{id[:63] + "g", false},
		{id[:63] + "\x00", false},
	} {
		if got := validID(tt.id); got != tt.want {
			t.Errorf("validID(%q) = %v", tt.id, got)
		}
	}
}
