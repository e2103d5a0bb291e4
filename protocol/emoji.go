package protocol

import (
	"bytes"
	"unicode"
	"unicode/utf8"
)

// Emoji limits: a family with skin tones or a subdivision flag takes 7 characters and
// 25-28 bytes.
const (
	maxEmojiBytes = 32
	maxEmojiRunes = 10
)

// ValidEmoji reports whether b is one emoji: a keycap (0-9 # * with U+20E3), a flag (two
// regional indicators), or pictographs (Unicode symbols, So) joined by U+200D, each with
// optional variation selectors, skin tones and tag characters. It does not check that the
// sequence is one the Unicode emoji list names; it keeps out text and more than one emoji.
func ValidEmoji(b []byte) bool {
	if len(b) == 0 || len(b) > maxEmojiBytes || !utf8.Valid(b) || utf8.RuneCount(b) > maxEmojiRunes {
		return false
	}
	r, n := utf8.DecodeRune(b)
	switch {
	case r >= '0' && r <= '9' || r == '#' || r == '*': // keycap
		rest, _ := bytes.CutPrefix(b[n:], []byte("\uFE0F"))
		return string(rest) == "\u20E3"
	case isRegional(r): // flag
		r2, n2 := utf8.DecodeRune(b[n:])
		return isRegional(r2) && n+n2 == len(b)
	}
	for i := 0; ; {
		r, n := utf8.DecodeRune(b[i:])
		if !isPictograph(r) {
			return false
		}
		for i += n; i != len(b); i += n { // b is valid UTF-8: i lands on len(b)
			r, n = utf8.DecodeRune(b[i:])
			if !isEmojiModifier(r) {
				break
			}
		}
		if i == len(b) {
			return true
		}
		if r != '\u200D' || i+n == len(b) { // only a joiner may follow, and something after it
			return false
		}
		i += n
	}
}

func isRegional(r rune) bool { return r >= 0x1F1E6 && r <= 0x1F1FF }

// isPictograph: a symbol that can stand as an emoji (not a modifier or indicator itself).
func isPictograph(r rune) bool {
	if isRegional(r) || r >= 0x1F3FB && r <= 0x1F3FF {
		return false
	}
	return r >= 0x1F000 && r <= 0x1FAFF || unicode.Is(unicode.So, r)
}

// isEmojiModifier: variation selectors, skin tones, the keycap mark and tag characters.
func isEmojiModifier(r rune) bool {
	return r == '\uFE0F' || r == '\uFE0E' || r == '\u20E3' || r >= 0x1F3FB && r <= 0x1F3FF || r >= 0xE0020 && r <= 0xE007F
}
