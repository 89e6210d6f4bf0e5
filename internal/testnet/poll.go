package testnet

import (
	"testing"
	"time"
)

// Poll calls done until it reports true or within has passed, and reports
// whether it did. It is the one way tests wait for the kernel (a timer to fire,
// a state to change): it checks often, so a loaded machine costs no more than
// the kernel's own lateness, and never sleeps in the hope that something
// happened.
func Poll(within time.Duration, done func() bool) bool {
	deadline := time.Now().Add(within)
	pause := time.Millisecond
	for !done() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
	return true
}

// Wait is Poll that fails t, saying what it waited for, when within passes.
func Wait(t testing.TB, within time.Duration, what string, done func() bool) {
	t.Helper()
	if !Poll(within, done) {
		t.Fatalf("waited %v for %s in vain", within, what)
	}
}
