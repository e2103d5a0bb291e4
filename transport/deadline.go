package transport

import (
	"io"
	"net/http"
	"time"
)

// deadlineChunk is how much of an answer must be taken within the write timeout.
const deadlineChunk = 64 << 10

// deadlineWriter gives a plain HTTP answer the sockets' write timeout for each
// 64 KiB: a client that stops reading cannot hold the handler, its buffers and
// an open file for ever, and a slow one that keeps reading is never cut off.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), deadlineChunk)
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
		m, err := w.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// ReadFrom keeps the server's own ReadFrom (sendfile for media) chunk by chunk.
func (w *deadlineWriter) ReadFrom(src io.Reader) (int64, error) {
	var total int64
	for {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
		n, err := io.CopyN(w.ResponseWriter, src, deadlineChunk)
		total += n
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
