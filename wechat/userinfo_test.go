package wechat_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/pandachat/pandachat/wechat"
	"github.com/pandachat/pandachat/wechat/wechattest"
)

func profile(app string) wechat.UserInfo {
	return wechat.UserInfo{
		OpenID: "o-1", UnionID: "u-1", NickName: "熊猫 Panda", AvatarURL: "https://example.com/a.png",
		Gender: 1, City: "Chengdu", Province: "Sichuan", Country: "China", Language: "zh_CN",
		Watermark: wechat.Watermark{AppID: app, Timestamp: 1700000000},
	}
}

func TestDecryptUserInfoRoundTrip(t *testing.T) {
	key := wechattest.NewSessionKey()
	want := profile(appID)
	data, iv := wechattest.EncryptUserInfo(key, want)
	got, err := wechat.DecryptUserInfo(key, data, iv, appID)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestDecryptUserInfoQuerySpaces: a '+' sent unescaped in a URL query arrives as ' '.
func TestDecryptUserInfoQuerySpaces(t *testing.T) {
	key := wechattest.NewSessionKey()
	var data, iv string
	for !strings.Contains(data+iv, "+") { // ciphertext is random; retry until it has a '+'
		data, iv = wechattest.EncryptUserInfo(key, profile(appID))
	}
	data, iv = strings.ReplaceAll(data, "+", " "), strings.ReplaceAll(iv, "+", " ")
	if _, err := wechat.DecryptUserInfo(key, data, iv, appID); err != nil {
		t.Fatal(err)
	}
}

func TestDecryptUserInfoErrors(t *testing.T) {
	key := wechattest.NewSessionKey()
	data, iv := wechattest.EncryptUserInfo(key, profile(appID))
	raw, _ := base64.StdEncoding.DecodeString(data)
	b64 := base64.StdEncoding.EncodeToString
	flip := func(b []byte, i int) string {
		c := append([]byte(nil), b...)
		c[i] ^= 0x01
		return b64(c)
	}
	notJSON, notJSONIV := wechattest.EncryptUserInfo(key, []int{1}) // JSON, but not a profile
	otherApp, otherAppIV := wechattest.EncryptUserInfo(key, profile("wx-other"))
	noMark, noMarkIV := wechattest.EncryptUserInfo(key, map[string]any{"openId": "o-1"})

	for _, tt := range []struct {
		name          string
		key, data, iv string
		app           string
		msg           string
	}{
		{"session_key not base64", "!!!!", data, iv, appID, "session_key is not base64"},
		{"iv not base64", key, data, "%%%%", appID, "iv is not base64"},
		{"data not base64", key, "@@@@", iv, appID, "encryptedData is not base64"},
		{"session_key 8 bytes", b64(make([]byte, 8)), data, iv, appID, "session_key is 8 bytes, want 16"},
		{"session_key 32 bytes", b64(make([]byte, 32)), data, iv, appID, "session_key is 32 bytes, want 16"},
		{"iv 12 bytes", key, data, b64(make([]byte, 12)), appID, "iv is 12 bytes, want 16"},
		{"data empty", key, "", iv, appID, "encryptedData is 0 bytes"},
		{"data not whole blocks", key, b64(raw[:len(raw)-1]), iv, appID, "not a whole number of AES blocks"},
		{"last block corrupted", key, flip(raw, len(raw)-1), iv, appID, "bad padding"},
		{"wrong session_key", b64(make([]byte, 16)), data, iv, appID, "wechat: "},
		{"first block corrupted", key, flip(raw, 0), iv, appID, "decrypted data is not JSON"},
		{"not a profile", key, notJSON, notJSONIV, appID, "not a user profile"},
		{"watermark for another app", key, otherApp, otherAppIV, appID, "watermark is for another appid"},
		{"no watermark", key, noMark, noMarkIV, appID, "watermark is for another appid"},
		{"no appid to check", key, data, iv, "", "no appid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			info, err := wechat.DecryptUserInfo(tt.key, tt.data, tt.iv, tt.app)
			if err == nil {
				t.Fatalf("got %+v, want an error", info)
			}
			var e *wechat.Error
			if !errors.As(err, &e) || !e.Refused || !strings.Contains(e.Error(), tt.msg) {
				t.Fatalf("got %v (%#v), want refused, containing %q", err, err, tt.msg)
			}
			if strings.Contains(e.Msg, tt.key) && tt.key != "" {
				t.Fatalf("error quotes the session_key: %q", e.Msg)
			}
		})
	}
}

func FuzzDecryptUserInfo(f *testing.F) {
	key := wechattest.NewSessionKey()
	data, iv := wechattest.EncryptUserInfo(key, profile(appID))
	f.Add(key, data, iv, appID)
	f.Add(key, data, iv, "wx-other")
	f.Add(key, strings.ReplaceAll(data, "+", " "), iv, appID)
	f.Add(key, data[:len(data)-4], iv, appID)
	f.Add("", "", "", "")
	f.Add("AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAA==", appID)
	f.Fuzz(func(t *testing.T, key, data, iv, app string) {
		info, err := wechat.DecryptUserInfo(key, data, iv, app)
		if err != nil {
			var e *wechat.Error
			if !errors.As(err, &e) || !e.Refused {
				t.Fatalf("error %v (%T) is not a refusing *wechat.Error", err, err)
			}
			return
		}
		if info.Watermark.AppID != app {
			t.Fatalf("accepted watermark %q for appid %q", info.Watermark.AppID, app)
		}
	})
}
