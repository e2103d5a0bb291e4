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
