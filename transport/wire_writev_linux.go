package transport

import (
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// maxIovecs is IOV_MAX on Linux: the most slices one writev takes.
const maxIovecs = 1024

// vecWriters lend each writev its iovec array for the length of one write.
// Go's own net.Buffers path keeps a socket's largest iovec array for as long
// as the socket lives (16 bytes a slice, up to 16 KiB), which a connection
// that once had a long queue would hold while idle.
var vecWriters = sync.Pool{New: func() any {
	w := &vecWriter{iov: make([]syscall.Iovec, 0, 64)}
	w.fn, w.try = w.write, w.writeOnce // bound once: no allocation per write
	return w
}}

// vecWriter is one writev call in progress.
type vecWriter struct {
	iov   []syscall.Iovec
	n     uintptr
	errno syscall.Errno
	fn    func(fd uintptr) bool
	try   func(fd uintptr)
}

// write is called by RawConn.Write with the socket; false: wait until it is
// writable (within the write deadline), then again.
func (w *vecWriter) write(fd uintptr) bool {
	w.n, _, w.errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
	return w.errno != syscall.EAGAIN && w.errno != syscall.EINTR
}

// writeOnce is one writev, whatever it does: RawConn.Control runs it, which
// neither waits nor looks at the deadline.
func (w *vecWriter) writeOnce(fd uintptr) {
	w.n, _, w.errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
}

// fill points the iovec array at bufs, at most maxIovecs of them.
func (w *vecWriter) fill(bufs [][]byte) {
	w.iov = w.iov[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		w.iov = append(w.iov, syscall.Iovec{Base: &b[0]})
		w.iov[len(w.iov)-1].SetLen(len(b))
		if len(w.iov) == maxIovecs {
			break
		}
	}
}

// tryWritev writes what the socket behind rc takes of bufs at once, with one
// writev that never waits (the socket is non-blocking): the bytes written, 0
// when the socket is full.
func tryWritev(rc syscall.RawConn, bufs [][]byte) (int, error) {
	w := vecWriters.Get().(*vecWriter)
	defer vecWriters.Put(w)
	w.fill(bufs)
	if len(w.iov) == 0 {
		return 0, nil
	}
	err := rc.Control(w.try)
	clear(w.iov) // the pool must not keep frames alive
	switch {
	case err != nil:
		return 0, err
	case w.errno == syscall.EAGAIN || w.errno == syscall.EINTR:
		return 0, nil
	case w.errno != 0:
		return 0, os.NewSyscallError("writev", w.errno)
	}
	return int(w.n), nil
}

// rawSocket is conn's file descriptor for writev, or nil when conn is not a
// kernel socket (TLS).
func rawSocket(conn net.Conn) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// writev writes all of bufs to the socket behind rc straight from the slices,
// waiting (within the connection's write deadline) whenever the socket is
// full. The slice headers in bufs are consumed; the bytes are only read.
func writev(rc syscall.RawConn, bufs [][]byte) error {
	w := vecWriters.Get().(*vecWriter)
	defer vecWriters.Put(w)
	for {
		w.fill(bufs)
		if len(w.iov) == 0 {
			return nil
		}
		err := rc.Write(w.fn)
		clear(w.iov) // the pool must not keep frames alive
		if err != nil {
			return err
		}
		if w.errno != 0 {
			return os.NewSyscallError("writev", w.errno)
		}
		consume(&bufs, int(w.n))
	}
}

// consume drops the first n bytes of bufs.
func consume(bufs *[][]byte, n int) {
	for len(*bufs) > 0 && n >= len((*bufs)[0]) {
		n -= len((*bufs)[0])
		(*bufs)[0] = nil
		*bufs = (*bufs)[1:]
	}
	if n > 0 {
		(*bufs)[0] = (*bufs)[0][n:]
	}
}

// readRaw reads the socket into c.rb once it has bytes (rawConn.Read calls it
// again after each wait); false asks for the wait.
func (c *wireConn) readRaw(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), c.rb)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case nil:
			c.rn, c.rerrno = n, 0
		default:
			c.rn, c.rerrno = 0, err.(syscall.Errno)
		}
		return true
	}
}
