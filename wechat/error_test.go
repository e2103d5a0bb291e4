package wechat_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/pandachat/pandachat/wechat"
)

func TestErrorThroughWrapping(t *testing.T) {
	for _, tt := range []struct {
		err  *wechat.Error
		text string
	}{
		{&wechat.Error{Refused: true, Code: 40029, Msg: "WeChat refused the login: errcode 40029"},
			"wechat: WeChat refused the login: errcode 40029"},
		{&wechat.Error{Msg: "WeChat answered HTTP 500"}, "wechat: WeChat answered HTTP 500"},
	} {
		var e *wechat.Error
		if !errors.As(fmt.Errorf("login: %w", tt.err), &e) || e != tt.err {
			t.Fatalf("errors.As lost %v", tt.err)
		}
		if e.Error() != tt.text {
			t.Errorf("Error() = %q, want %q", e.Error(), tt.text)
		}
		if e.Unwrap() != nil {
			t.Errorf("%v: Unwrap() = %v, want nil", e, e.Unwrap())
		}
	}
}
