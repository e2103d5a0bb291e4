package web_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestExtrasShared: the browser client and the mini-program run one file of
// logic for recall, reactions, typing, mentions and unread counts (its tests
// are in miniprogram/test/extras.test.js); the two copies must not drift.
func TestExtrasShared(t *testing.T) {
	web, err := os.ReadFile(filepath.Join("static", "extras.js"))
	if err != nil {
		t.Fatal(err)
	}
	mp, err := os.ReadFile(filepath.Join("..", "miniprogram", "utils", "extras.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(web, mp) {
		t.Fatal("web/static/extras.js and miniprogram/utils/extras.js differ: copy the changed one over the other")
	}
}
