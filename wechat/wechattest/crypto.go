package wechattest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
)

// NewSessionKey returns a random 16-byte session_key, base64, as WeChat issues them.
func NewSessionKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// EncryptUserInfo encrypts info as JSON the way WeChat builds encryptedData:
// AES-128-CBC with the session_key, a random iv, PKCS#7 padding, base64.
// It panics on a session_key that is not 16 bytes of base64, or on info
// that does not marshal: both are mistakes in the test.
func EncryptUserInfo(sessionKey string, info any) (encryptedData, iv string) {
	key, err := base64.StdEncoding.DecodeString(sessionKey)
	if err != nil {
		panic("wechattest: session key is not base64")
	}
	block, err := aes.NewCipher(key)
	if err != nil || len(key) != 16 {
		panic("wechattest: session key is not 16 bytes")
	}
	plain, err := json.Marshal(info)
	if err != nil {
		panic("wechattest: " + err.Error())
	}
	n := aes.BlockSize - len(plain)%aes.BlockSize
	plain = append(plain, bytes.Repeat([]byte{byte(n)}, n)...)
	ivb := make([]byte, aes.BlockSize)
	rand.Read(ivb)
	cipher.NewCBCEncrypter(block, ivb).CryptBlocks(plain, plain)
	return base64.StdEncoding.EncodeToString(plain), base64.StdEncoding.EncodeToString(ivb)
}
