package wechat

import "fmt"

// Error is the only error type of this package.
type Error struct {
	// Refused is true when WeChat, or the data, refused the login (answer 401);
	// false when WeChat was unreachable or answered nonsense (answer 502).
	Refused bool
	// Code is WeChat's errcode, when WeChat gave one.
	Code int
	// Msg says why in words a user may read; it never holds a secret.
	Msg string

	err error // the context error behind an interrupted call, for errors.Is
}

func (e *Error) Error() string { return "wechat: " + e.Msg }

// Unwrap exposes context.Canceled or context.DeadlineExceeded when the call
// was cut short, so a caller can tell its own cancellation from WeChat's fault.
func (e *Error) Unwrap() error { return e.err }

func refused(code int, format string, args ...any) *Error {
	return &Error{Refused: true, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func broken(code int, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}
