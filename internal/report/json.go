package report

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// The appenders below write JSON by hand into a caller's buffer: the socket path
// runs once per socket, hundreds of thousands of times a run, and allocates
// nothing (encoding/json would reflect and allocate on every record).

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: the one escaper of every record.
// Invalid UTF-8 becomes U+FFFD, as encoding/json writes it; control characters,
// U+2028 and U+2029 are escaped; unlike encoding/json's default, <, > and & are
// not (the output is not HTML).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendKey appends `,"key":` (the comma unless first).
func appendKey(dst []byte, key string, first bool) []byte {
	if !first {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

func appendInt(dst []byte, key string, v int64) []byte {
	return strconv.AppendInt(appendKey(dst, key, false), v, 10)
}

func appendUint(dst []byte, key string, v uint64) []byte {
	return strconv.AppendUint(appendKey(dst, key, false), v, 10)
}

func appendBool(dst []byte, key string, v bool) []byte {
	return strconv.AppendBool(appendKey(dst, key, false), v)
}

func appendStr(dst []byte, key, v string) []byte {
	return appendString(appendKey(dst, key, false), v)
}

func appendMS(dst []byte, key string, d time.Duration) []byte {
	return appendInt(dst, key, d.Milliseconds())
}

// appendSec appends whole seconds.
func appendSec(dst []byte, key string, d time.Duration) []byte {
	return appendInt(dst, key, int64(d/time.Second))
}

func appendUS(dst []byte, key string, d time.Duration) []byte {
	return appendInt(dst, key, d.Microseconds())
}

func appendFloat(dst []byte, key string, v float64) []byte {
	return strconv.AppendFloat(appendKey(dst, key, false), v, 'f', -1, 64)
}

// appendHex16 appends v as 16 lower-case hex digits in quotes.
func appendHex16(dst []byte, v uint64) []byte {
	dst = append(dst, '"')
	for sh := 60; sh >= 0; sh -= 4 {
		dst = append(dst, hexDigits[(v>>uint(sh))&0xf])
	}
	return append(dst, '"')
}

func appendIntValue(dst []byte, v int64) []byte { return strconv.AppendInt(dst, v, 10) }
