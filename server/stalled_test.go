package server_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/pandachat/pandachat/internal/chattest"
)

// A client that asks for a file and stops reading is cut off once 64 KiB of
// the answer has waited longer than the write timeout: it cannot hold the
// handler and the open file for ever.
func TestStalledDownloadIsCutOff(t *testing.T) {
	cfg := noLimit()
	cfg.DataDir = t.TempDir()
	cfg.WriteTimeout = 300 * time.Millisecond
	cfg.UploadLimit = 128 << 20
	env := chattest.Start(t, cfg)
	s := env.DevLogin("a")
	big := bigPNG(64 << 20) // beyond what the sockets' buffers hold, even tuned ones
	code, ans := env.Upload(s, "big.png", big)
	if code != 200 {
		t.Fatalf("upload: %d %v", code, ans)
	}
	u, err := url.Parse(fmt.Sprint(ans["url"]))
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse(env.URL)
	conn, err := net.Dial("tcp", base.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.Path, base.Host)
	time.Sleep(2 * time.Second) // not reading
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || n >= int64(len(big)) {
		t.Errorf("HTTP %d, %d of %d bytes (%v); want the answer cut short after the write timeout", resp.StatusCode, n, len(big), err)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("after %d bytes the client waited 10 s for more: the server neither sent them nor closed", n)
	}
}

// A slow client that keeps reading gets the whole file: the timeout is per
// 64 KiB, not for the answer.
func TestSlowDownloadCompletes(t *testing.T) {
	cfg := noLimit()
	cfg.DataDir = t.TempDir()
	cfg.WriteTimeout = 300 * time.Millisecond
	env := chattest.Start(t, cfg)
	s := env.DevLogin("a")
	big := bigPNG(1 << 20)
	code, ans := env.Upload(s, "big.png", big)
	if code != 200 {
		t.Fatalf("upload: %d %v", code, ans)
	}
	resp, err := env.HTTP.Get(fmt.Sprint(ans["url"]))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n int64
	buf := make([]byte, 32<<10)
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // 1.6 MB/s: a 64 KiB chunk takes ~40 ms, a whole 1 MiB over a second
	}
	if n != int64(len(big)) {
		t.Errorf("a slow reader got %d of %d bytes", n, len(big))
	}
}

// bigPNG is a small image padded by an ancillary chunk of n bytes (before IEND).
func bigPNG(n int) []byte {
	img := chattest.PNG(8, 8)
	end := img[len(img)-12:] // the IEND chunk
	chunk := binary.BigEndian.AppendUint32(nil, uint32(n))
	chunk = append(chunk, "prVt"...)
	chunk = append(chunk, make([]byte, n)...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	out := append([]byte{}, img[:len(img)-12]...)
	return append(append(out, chunk...), end...)
}
