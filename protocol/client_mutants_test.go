package protocol_test

import (
	"strings"
	"testing"

	"github.com/pandachat/pandachat/protocol"
)

// TestScannerEdgesMatchEncodingJSON: frames at the edges the scanner's fast paths choose
// between, against encoding/json: a key that is not ASCII and still names a field (ſ folds to
// s), a \u escape that ends the data one byte before the closing quote or with it, and
// strings and contents around the eight bytes read at a time.
func TestScannerEdgesMatchEncodingJSON(t *testing.T) {
	frames := []string{
		`{"text":true,"content":"x","mentionſ":["a1"]}`, `{"text":true,"content":"x","MENTIONſ":["a1"]}`,
		`{"text":true,"content":"x","\u006dentions":["a1"]}`, `{"ſ":true,"text":true,"content":"x"}`,
		`"\u0041"`, `"ab\u0041"`, `"\u0041`, `"\u004`, ` "\u0041"`, `{"a":"\u0041"}`, `["\u0041"]`,
	}
	for n := 1; n <= 17; n++ {
		s := strings.Repeat("a", n)
		frames = append(frames, `"`+s+`"`, `"`+s, `{"text":true,"content":"`+s+`"}`,
			`{"text":true,"content":"`+strings.Repeat("é", n)+`"}`, `{"text":true,"content":"`+s+`é"}`)
	}
	for _, f := range frames {
		sameAsReference(t, []byte(f), 3)
		sameAsReference(t, []byte(f), 20)
	}
}

// TestNonASCIIKeyNamesAField: "mentionſ" is "mentions" under encoding/json's folding.
func TestNonASCIIKeyNamesAField(t *testing.T) {
	m, bad := protocol.ParseClientMessageV2([]byte(`{"text":true,"content":"hi","mentionſ":["bob"]}`), 100)
	if bad != nil || m.Mentions() != "bob" {
		t.Fatalf("got %+v %v, want the mention bob", m, bad)
	}
}
