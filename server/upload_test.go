package server_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/chattest"
	"github.com/pandachat/pandachat/media"
)

// The quota is per user, answered with 429 ERR_QUOTA, and kept across a restart.
func TestUploadQuotaAcrossRestart(t *testing.T) {
	imgs := [][]byte{chattest.PNG(40, 40), chattest.PNG(40, 40), chattest.PNG(40, 40)}
	size := int64(len(imgs[0]))
	cfg := noLimit()
	cfg.DataDir = t.TempDir()
	cfg.UploadQuota = media.Quota{Bytes: 2*size + size/2, Per: time.Hour}
	env := chattest.Start(t, cfg)
	mei, lan := env.DevLogin("mei"), env.DevLogin("lan")
	for _, img := range imgs[:2] {
		if code, ans := env.Upload(mei, "a.png", img); code != 200 {
			t.Fatalf("upload: %d %v", code, ans)
		}
	}
	code, ans := env.Upload(mei, "a.png", imgs[2])
	if msg, _ := ans["message"].(string); code != 429 || ans["error"] != "ERR_QUOTA" || !strings.Contains(msg, "upload quota") {
		t.Fatalf("third upload: %d %v, want 429 ERR_QUOTA", code, ans)
	}
	if code, ans := env.Upload(lan, "a.png", imgs[2]); code != 200 {
		t.Fatalf("another user: %d %v", code, ans)
	}
	if err := env.Stop(); err != nil {
		t.Fatal(err)
	}

	env = chattest.Start(t, cfg)
	if code, ans := env.Upload(mei, "a.png", imgs[2]); code != 429 || ans["error"] != "ERR_QUOTA" {
		t.Fatalf("after restart: %d %v, want 429 ERR_QUOTA", code, ans)
	}
}

// While the disk is short of space uploads get 507 and nothing is written; chat goes on.
func TestUploadsPauseChatGoesOn(t *testing.T) {
	dir := t.TempDir()
	free, err := media.DiskFree(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := noLimit()
	cfg.DataDir = dir
	cfg.MinFreeDisk = free + 1<<30
	env := chattest.Start(t, cfg)
	s := env.DevLogin("mei")
	c := env.Dial(s, "room=disk")
	c.NextOfType("system")

	code, ans := env.Upload(s, "a.png", chattest.PNG(8, 8))
	if msg, _ := ans["message"].(string); code != 507 || ans["error"] != "ERR_STORAGE_FULL" || !strings.Contains(msg, "chat goes on") {
		t.Fatalf("upload: %d %v, want 507 ERR_STORAGE_FULL", code, ans)
	}
	if files := filesUnder(t, filepath.Join(dir, "media")); len(files) != 0 {
		t.Fatalf("media written while the disk is short: %v", files)
	}
	c.Send(map[string]any{"text": true, "content": "still here"})
	if m := c.NextChat(); m.Type != "user" || m.Content != "still here" {
		t.Fatalf("chat while uploads pause: %v", m)
	}

	// With room to spare the same upload goes through.
	if err := env.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg.MinFreeDisk = 1 << 20
	env = chattest.Start(t, cfg)
	s = env.DevLogin("mei")
	if code, ans := env.Upload(s, "a.png", chattest.PNG(8, 8)); code != 200 {
		t.Fatalf("upload with room: %d %v", code, ans)
	}
}

// A small file declaring 20000×20000 pixels is refused with 413 and not kept.
func TestUploadDecompressionBomb(t *testing.T) {
	cfg := noLimit()
	cfg.DataDir = t.TempDir()
	env := chattest.Start(t, cfg)
	s := env.DevLogin("mei")
	bomb := bytes.Clone(chattest.PNG(1, 1))
	binary.BigEndian.PutUint32(bomb[16:], 20000)
	binary.BigEndian.PutUint32(bomb[20:], 20000)
	binary.BigEndian.PutUint32(bomb[29:], crc32.ChecksumIEEE(bomb[12:29]))
	code, ans := env.Upload(s, "bomb.png", bomb)
	if msg, _ := ans["message"].(string); code != 413 || ans["error"] != "ERR_TOO_LARGE" || !strings.Contains(msg, "megapixels") {
		t.Fatalf("bomb: %d %v, want 413 ERR_TOO_LARGE about megapixels", code, ans)
	}
	if files := filesUnder(t, filepath.Join(cfg.DataDir, "media")); len(files) != 0 {
		t.Fatalf("bomb kept: %v", files)
	}
}

// filesUnder lists the regular files below dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
