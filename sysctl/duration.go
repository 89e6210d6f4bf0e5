package sysctl

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a duration the way the sysctls are written, or finer: a
// bare integer is whole seconds ("90"), anything else a Go duration ("90s",
// "1h30m", "500ms"). Negative values, fractions without a unit, unknown units,
// overflow and trailing garbage are errors that say what is accepted.
func ParseDuration(s string) (time.Duration, error) {
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

// ParseSeconds reads a keepalive value as ParseDuration does, in whole seconds
// from 1 s to max (MaxTime, MaxIntvl).
func ParseSeconds(s string, max time.Duration) (time.Duration, error) {
	want := fmt.Sprintf("want whole seconds from 1 to %d, as 90, 90s or 2m", max/time.Second)
	if isNumber(s) && strings.ContainsRune(s, '.') {
		return 0, fmt.Errorf("%q has a fraction: %s", s, want)
	}
	d, err := ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, want)
	}
	switch {
	case d < time.Second:
		return 0, fmt.Errorf("%q is below one second: %s", s, want)
	case d%time.Second != 0:
		return 0, fmt.Errorf("%q is not whole seconds: %s", s, want)
	case d > max:
		return 0, fmt.Errorf("%q is above %d s: %s", s, max/time.Second, want)
	}
	return d, nil
}

// ParseKeepalive reads a socket's keepalive setting written TIME/INTVL/PROBES
// (TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT), as "60s/10s/5", within the ranges
// Validate checks.
func ParseKeepalive(s string) (Keepalive, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return Keepalive{}, fmt.Errorf("%q: want IDLE/INTVL/CNT, as 60s/10s/5", s)
	}
	t, err := ParseSeconds(parts[0], MaxTime)
	if err != nil {
		return Keepalive{}, fmt.Errorf("IDLE %v", err)
	}
	i, err := ParseSeconds(parts[1], MaxIntvl)
	if err != nil {
		return Keepalive{}, fmt.Errorf("INTVL %v", err)
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || !isDigits(parts[2]) || n < 1 || n > MaxProbes {
		return Keepalive{}, fmt.Errorf("CNT %q: want a whole number from 1 to %d", parts[2], MaxProbes)
	}
	return Keepalive{Time: t, Intvl: i, Probes: n}, nil
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

// isNumber reports a plain decimal without a unit, such as "1.5", "-2" or "+3".
func isNumber(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] >= '0' && s[i] <= '9':
			digits++
		case s[i] == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}
