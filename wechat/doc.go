// Package wechat logs mini-program users in through the WeChat API:
// Code2Session trades a wx.login code for the user's openid and session_key,
// and DecryptUserInfo opens the profile that old clients send encrypted with it.
//
// Every failure is an *Error. Its Refused field tells the two answers a login
// endpoint needs apart: the login itself was bad (HTTP 401), or WeChat could
// not be asked (HTTP 502). No error text ever carries the app secret or a
// session_key.
package wechat
