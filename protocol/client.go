package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind is what a chat message carries.
type Kind uint8

const (
	KindText Kind = iota + 1
	KindGallery
)

// ClientMessage is a validated client frame. Fields a client may not set are never read.
type ClientMessage struct {
	Kind    Kind
	Content string // KindText: trimmed text
	URL     string // KindGallery: as sent; the caller resolves it
	CID     string // echoed to the sender only
	HasCID  bool
}

// clientFrame is the accepted shape; every other field is dropped.
type clientFrame struct {
	Text    *bool           `json:"text"`
	Gallery *bool           `json:"gallery"`
	Content *string         `json:"content"`
	URL     *string         `json:"url"`
	CID     json.RawMessage `json:"cid"`
}

// BadMessage is a refused client frame; CID is kept when it could be read.
type BadMessage struct {
	Reason string
	CID    string
	HasCID bool
}

func (e *BadMessage) Error() string { return e.Reason }

// CIDRef is the cid to echo with the refusal, nil when there was none.
func (e *BadMessage) CIDRef() *string { return cidRef(e.CID, e.HasCID) }

// CIDRef is the cid to echo to the sender, nil when there was none.
func (m ClientMessage) CIDRef() *string { return cidRef(m.CID, m.HasCID) }

func cidRef(cid string, ok bool) *string {
	if !ok {
		return nil
	}
	return &cid
}

// ParseClientMessage validates one text frame. maxContent is in characters (runes).
func ParseClientMessage(data []byte, maxContent int) (ClientMessage, *BadMessage) {
	if maxContent <= 0 {
		maxContent = DefaultMaxContent
	}
	var f clientFrame
	if err := json.Unmarshal(data, &f); err != nil {
		return ClientMessage{}, &BadMessage{Reason: describeJSONError(data, err)}
	}
	var m ClientMessage
	if len(f.CID) > 0 && string(f.CID) != "null" {
		var cid string
		if err := json.Unmarshal(f.CID, &cid); err != nil {
			return m, &BadMessage{Reason: "cid must be a string"}
		}
		if utf8.RuneCountInString(cid) > MaxCIDLen {
			return m, &BadMessage{Reason: fmt.Sprintf("cid is longer than %d characters", MaxCIDLen)}
		}
		m.CID, m.HasCID = cid, true
	}
	bad := func(format string, args ...any) (ClientMessage, *BadMessage) {
		return ClientMessage{}, &BadMessage{Reason: fmt.Sprintf(format, args...), CID: m.CID, HasCID: m.HasCID}
	}
	text := f.Text != nil && *f.Text
	gallery := f.Gallery != nil && *f.Gallery
	switch {
	case text && gallery:
		return bad("a message is either text or gallery, not both")
	case text:
		if f.Content == nil {
			return bad("text message without content")
		}
		c := strings.TrimSpace(*f.Content)
		n := utf8.RuneCountInString(c)
		if n == 0 {
			return bad("content is empty")
		}
		if n > maxContent {
			return bad("content is %d characters, the limit is %d", n, maxContent)
		}
		m.Kind, m.Content = KindText, c
	case gallery:
		if f.URL == nil || strings.TrimSpace(*f.URL) == "" {
			return bad("gallery message without url")
		}
		m.Kind, m.URL = KindGallery, strings.TrimSpace(*f.URL)
	default:
		return bad(`a message needs "text":true with content or "gallery":true with url`)
	}
	return m, nil
}

func describeJSONError(data []byte, err error) string {
	if !json.Valid(data) {
		return "frame is not valid JSON"
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return "a field has the wrong type: " + err.Error()
	}
	return "frame is not a JSON object"
}
