package protocol_test

import (
	"testing"
)

// sweepBytes are the bytes that change what a JSON scanner does next.
const sweepBytes = "\"\\{}[],:0-e.tnu \x01"

// TestParseSweepMatchesEncodingJSON is a fixed slice of what the differential fuzz test
// explores: every frame of the tricky list cut at every length, and (for the short ones)
// with each byte replaced by, or preceded by, each of sweepBytes. The scanner must agree
// with encoding/json on all of them. It runs with the plain test suite, so a slip in the
// scanner's offsets or bounds fails `go test` without fuzzing.
func TestParseSweepMatchesEncodingJSON(t *testing.T) {
	n := 0
	check := func(b []byte) {
		t.Helper()
		sameAsReference(t, b, 5)
		n++
	}
	frames := append(trickyFrames(),
		// escaped keys that must still name their field (the last of the five, an
		// upper-case A), and lower-case hex digits at the top of their range
		`{"text":true,"content":"x","\u0063id":"c"}`, `{"text":true,"content":"x","CI\u0044":"c"}`,
		`{"\u0067ALLERY":true,"url":"/m"}`, `{"g\u0041llery":true,"url":"/m"}`,
		`{"text":true,"content":"\u00ff\u00fF\u0aFa"}`,
	)
	for _, s := range frames {
		for l := 0; l <= len(s); l++ {
			check([]byte(s[:l]))
		}
		if len(s) > 64 {
			continue
		}
		for i := 0; i < len(s); i++ {
			for j := 0; j < len(sweepBytes); j++ {
				b := []byte(s)
				b[i] = sweepBytes[j]
				check(b)
				check([]byte(s[:i] + sweepBytes[j:j+1] + s[i:]))
			}
		}
	}
	t.Logf("%d frames", n)
}
