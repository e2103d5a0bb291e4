//go:build !linux

package transport

import (
	"net"
	"syscall"
)

// rawSocket: elsewhere the outbox writes through net.Buffers (wireConn.writeVec).
func rawSocket(net.Conn) syscall.RawConn { return nil }

func writev(syscall.RawConn, [][]byte) error { panic("writev is only used on Linux") }

func tryWritev(syscall.RawConn, [][]byte) (int, error) { panic("writev is only used on Linux") }

// readRaw: elsewhere reads go through net.Conn (c.raw is nil).
func (c *wireConn) readRaw(uintptr) bool { panic("raw reads are only used on Linux") }
