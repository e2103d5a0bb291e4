package transport

// SetPingHook makes f see every client ping before it is answered, for tests
// that inject panics into a connection's read loop. The returned func undoes it.
func SetPingHook(f func(payload []byte)) (restore func()) {
	testHookPing.Store(&f)
	return func() { testHookPing.Store(nil) }
}
