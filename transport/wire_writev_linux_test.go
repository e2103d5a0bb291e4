package transport

import (
	"reflect"
	"testing"
)

// consume drops whole slices first, then the start of the next one.
func TestConsume(t *testing.T) {
	for _, c := range []struct {
		n    int
		want []string
	}{
		{0, []string{"abc", "de", "f"}},
		{1, []string{"bc", "de", "f"}},
		{3, []string{"de", "f"}},
		{4, []string{"e", "f"}},
		{5, []string{"f"}},
		{6, []string{}},
	} {
		bufs := [][]byte{[]byte("abc"), []byte("de"), []byte("f")}
		consume(&bufs, c.n)
		got := []string{}
		for _, b := range bufs {
			got = append(got, string(b))
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("consume %d: %q, want %q", c.n, got, c.want)
		}
	}
}

// A socket gets the writev path, anything else (TLS) none.
func TestRawSocket(t *testing.T) {
	srv, _ := tcpPair(t, 0)
	if rawSocket(srv) == nil {
		t.Error("no raw socket for a TCP connection")
	}
	if rawSocket(plainConn{srv}) != nil {
		t.Error("a raw socket for a connection that hides it")
	}
}
