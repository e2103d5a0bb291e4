package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/persistence"
	"github.com/pandachat/pandachat/server"
)

// A backup still running when the grace period ends is cut off before the
// store closes: the store never closes under a backup that still reads it.
func TestShutdownCutsOffALongBackup(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{Addr: "127.0.0.1:0", DataDir: dir, Logger: slog.New(slog.DiscardHandler)}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("b", 500)
	for batch := 0; batch < 20; batch++ { // about 10 MB: more than the socket buffers hold
		var msgs []persistence.Message
		for i := 1; i <= 1000; i++ {
			id := uint64(batch*1000 + i)
			msgs = append(msgs, persistence.Message{ID: id, Data: []byte(fmt.Sprintf(`{"id":%d,"content":"%s"}`, id, body))})
		}
		if err := srv.Store().AppendMessages("big", msgs); err != nil {
			t.Fatal(err)
		}
	}
	adm := startAdmin(srv, cfg)
	if adm == nil {
		t.Fatal("no admin socket")
	}
	conn, err := net.Dial("unix", filepath.Join(dir, adminSocket))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /backup HTTP/1.1\r\nHost: admin\r\n\r\n")
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("backup answer: %q %v", line, err)
	}
	time.Sleep(200 * time.Millisecond) // the backup fills the socket and waits for a reader that never comes

	stopped := make(chan struct{})
	go func() { adm.stop(300 * time.Millisecond); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop still waits for the backup long after the grace period")
	}
	// The backup was cut off when stop returned: reading now finds the bytes
	// already in the socket, then the end — not a completed backup.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("the backup stream did not end when stop returned: %v", err)
	}
	if strings.Contains(string(rest), backupStatus+": ok") {
		t.Error("the backup ran on after stop returned (and so after the store may close)")
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
