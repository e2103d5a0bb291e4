package wechat

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// UserInfo is the profile inside the encryptedData of wx.getUserInfo.
type UserInfo struct {
	OpenID    string    `json:"openId"`
	UnionID   string    `json:"unionId,omitempty"`
	NickName  string    `json:"nickName"`
	AvatarURL string    `json:"avatarUrl"`
	Gender    int       `json:"gender"`
	City      string    `json:"city"`
	Province  string    `json:"province"`
	Country   string    `json:"country"`
	Language  string    `json:"language"`
	Watermark Watermark `json:"watermark"`
}

// Watermark names the app the data was encrypted for, and when.
type Watermark struct {
	AppID     string `json:"appid"`
	Timestamp int64  `json:"timestamp"`
}

// DecryptUserInfo opens encryptedData (AES-128-CBC, PKCS#7, base64) with the
// session_key and iv, and checks that its watermark names appID. The caller
// should also check OpenID against the one Code2Session returned.
// Every error is an *Error with Refused set.
func DecryptUserInfo(sessionKey, encryptedData, iv, appID string) (UserInfo, error) {
	if appID == "" {
		return UserInfo{}, refused(0, "no appid to check the watermark against")
	}
	key, err := decode64(sessionKey)
	if err != nil {
		return UserInfo{}, refused(0, "session_key is not base64")
	}
	if len(key) != 16 {
		return UserInfo{}, refused(0, "session_key is %d bytes, want 16", len(key))
	}
	ivb, err := decode64(iv)
	if err != nil {
		return UserInfo{}, refused(0, "iv is not base64")
	}
	if len(ivb) != aes.BlockSize {
		return UserInfo{}, refused(0, "iv is %d bytes, want 16", len(ivb))
	}
	data, err := decode64(encryptedData)
	if err != nil {
		return UserInfo{}, refused(0, "encryptedData is not base64")
	}
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return UserInfo{}, refused(0, "encryptedData is %d bytes, not a whole number of AES blocks", len(data))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return UserInfo{}, refused(0, "session_key is not an AES key")
	}
	cipher.NewCBCDecrypter(block, ivb).CryptBlocks(data, data)
	plain, ok := unpad(data)
	if !ok {
		return UserInfo{}, refused(0, "encryptedData has bad padding (wrong session_key or iv?)")
	}
	var info UserInfo
	if !json.Valid(plain) {
		return UserInfo{}, refused(0, "decrypted data is not JSON (wrong session_key or iv?)")
	}
	if err := json.Unmarshal(plain, &info); err != nil {
		return UserInfo{}, refused(0, "decrypted data is not a user profile")
	}
	if info.Watermark.AppID != appID {
		return UserInfo{}, refused(0, "encryptedData watermark is for another appid")
	}
	return info, nil
}

// decode64 reads standard base64, repairing the '+' that a URL query turned into ' '.
func decode64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.ReplaceAll(s, " ", "+"))
}

// unpad strips PKCS#7 padding, checking every pad byte.
func unpad(b []byte) ([]byte, bool) {
	if len(b) == 0 {
		return nil, false
	}
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize || n > len(b) {
		return nil, false
	}
	for _, p := range b[len(b)-n:] {
		if int(p) != n {
			return nil, false
		}
	}
	return b[:len(b)-n], true
}
