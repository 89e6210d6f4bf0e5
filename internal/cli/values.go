package cli

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// parseDuration reads a duration as DESIGN.md defines it: a Go duration ("90s",
// "1h30m", "500ms") or a bare integer meaning seconds, like the sysctls. Negative
// values, fractions without a unit, unknown units, overflow and trailing garbage
// are errors.
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty value")
	}
	if isDigits(s) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) {
			return 0, fmt.Errorf("%q is too large", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("%q is negative", s)
	}
	if isNumber(s) {
		return 0, fmt.Errorf("%q: a bare number is whole seconds; give fractions a unit, as 1.5s or 1500ms", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (examples: 90, 90s, 2m, 1h30m, 500ms)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// parseSeconds reads a keepalive value: a duration as parseDuration takes it, in
// whole seconds from 1 to max.
func parseSeconds(s string, max int) (time.Duration, error) {
	want := fmt.Sprintf("want whole seconds from 1 to %d, as 90, 90s or 2m", max)
	if isNumber(s) && !isDigits(s) {
		return 0, fmt.Errorf("%q has a fraction: %s", s, want)
	}
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, want)
	}
	switch {
	case d < time.Second:
		return 0, fmt.Errorf("%q is below one second: %s", s, want)
	case d%time.Second != 0:
		return 0, fmt.Errorf("%q is not whole seconds: %s", s, want)
	case d > time.Duration(max)*time.Second:
		return 0, fmt.Errorf("%q is above %d s: %s", s, max, want)
	}
	return d, nil
}

// parseCount reads a whole number from min to max, digits only.
func parseCount(s string, min, max int) (int, error) {
	want := fmt.Sprintf("want a whole number from %d to %d", min, max)
	if !isDigits(s) {
		return 0, fmt.Errorf("%q: %s", s, want)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%q: %s", s, want)
	}
	return n, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isNumber reports a plain decimal such as "1.5" or "-2" (no unit).
func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && strings.IndexFunc(s, func(r rune) bool {
		return r == 'e' || r == 'E' || r == 'x' || r == 'X' || r == 'p' || r == 'P' || r == 'n' || r == 'N' || r == 'i' || r == 'I'
	}) < 0
}

// durationFlag is a pflag.Value for parseDuration.
type durationFlag struct {
	d   *time.Duration
	set bool
}

func (f *durationFlag) String() string {
	if f.d == nil || (*f.d == 0 && !f.set) {
		return ""
	}
	return f.d.String()
}
func (f *durationFlag) Type() string { return "duration" }
func (f *durationFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*f.d, f.set = d, true
	return nil
}

// secondsFlag is a pflag.Value for parseSeconds.
type secondsFlag struct {
	d   time.Duration
	max int
	set bool
}

func (f *secondsFlag) String() string {
	if !f.set {
		return ""
	}
	return f.d.String()
}
func (f *secondsFlag) Type() string { return "seconds" }
func (f *secondsFlag) Set(s string) error {
	d, err := parseSeconds(s, f.max)
	if err != nil {
		return err
	}
	f.d, f.set = d, true
	return nil
}

// countFlag is a pflag.Value for parseCount.
type countFlag struct {
	n        int
	min, max int
	set      bool
}

func (f *countFlag) String() string {
	if !f.set {
		return ""
	}
	return strconv.Itoa(f.n)
}
func (f *countFlag) Type() string { return "count" }
func (f *countFlag) Set(s string) error {
	n, err := parseCount(s, f.min, f.max)
	if err != nil {
		return err
	}
	f.n, f.set = n, true
	return nil
}

// human writes a duration the way the table does: "2h11m15s", "75s", "500ms".
func human(d time.Duration) string {
	if d >= time.Second && d%time.Second == 0 {
		s := d.String()
		s = strings.Replace(s, "m0s", "m", 1)
		s = strings.Replace(s, "h0m", "h", 1)
		return s
	}
	return d.String()
}
