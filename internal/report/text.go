package report

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Duration writes d for people: the one way tcpkeep writes a duration in a
// table or a sentence. Below a second in milliseconds (450ms), below ten
// seconds to a tenth (1.5s), else to the second in days, hours, minutes and
// seconds, trailing zero units left out (42s, 1m15s, 5m, 2h11m15s, 2h, 3d4h).
func Duration(d time.Duration) string {
	var b [24]byte
	return string(AppendDuration(b[:0], d))
}

// AppendDuration appends Duration(d) without allocating.
func AppendDuration(dst []byte, d time.Duration) []byte {
	switch {
	case d <= 0:
		return append(dst, "0s"...)
	case d < time.Second-time.Millisecond/2:
		dst = strconv.AppendInt(dst, int64(d.Round(time.Millisecond)/time.Millisecond), 10)
		return append(dst, "ms"...)
	case d < 10*time.Second-50*time.Millisecond:
		ds := int64(d.Round(100*time.Millisecond) / (100 * time.Millisecond))
		dst = strconv.AppendInt(dst, ds/10, 10)
		if ds%10 != 0 {
			dst = append(dst, '.', byte('0'+ds%10))
		}
		return append(dst, 's')
	}
	s := int64(d.Round(time.Second) / time.Second)
	units := [4]struct {
		n    int64
		unit byte
	}{{s / 86400, 'd'}, {s % 86400 / 3600, 'h'}, {s % 3600 / 60, 'm'}, {s % 60, 's'}}
	first, last := 0, 3
	for units[first].n == 0 {
		first++
	}
	for units[last].n == 0 {
		last--
	}
	for _, u := range units[first : last+1] {
		dst = strconv.AppendInt(dst, u.n, 10)
		dst = append(dst, u.unit)
	}
	return dst
}

// Printable is s for a terminal: control characters and invalid UTF-8 become
// '?'. A process name (comm) is whatever bytes its process chose.
func Printable(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			var b []byte
			return string(AppendPrintable(b, s))
		}
	}
	return s
}

// AppendPrintable appends Printable(s) without allocating.
func AppendPrintable(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r < 0x20, r >= 0x7f && r < 0xa0:
			dst = append(dst, '?')
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}

// Count writes "1 socket", "2 sockets".
func Count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func appendCount(dst []byte, n int, what string) []byte {
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, ' ')
	dst = append(dst, what...)
	if n != 1 {
		dst = append(dst, 's')
	}
	return dst
}

// Nearest is the name among names that s most likely misspells or
// abbreviates, for "did you mean": a name s starts (two letters or more),
// else the one fewest edits away (insertions, deletions, substitutions, swaps
// of neighbours), if at most two; "" when none is that close.
func Nearest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		d := distance(s, n)
		if len(s) >= 2 && strings.HasPrefix(n, s) {
			d = 1
		}
		if d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// distance is the edit distance between a and b (optimal string alignment).
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
