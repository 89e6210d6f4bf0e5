package kernel

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/tcpkeep/tcpkeep/diag"
)

// TestFakeDumpsAsTheKernelDoes: the filter applies, a destroyed socket is gone
// from the next dump and a second destroy finds nothing, and a context that
// ends stops the dump with its error.
func TestFakeDumpsAsTheKernelDoes(t *testing.T) {
	mk := func(cookie uint64, st diag.State, port uint16) diag.Socket {
		return diag.Socket{Family: diag.FamilyInet, State: st, Cookie: cookie,
			Local: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port), Remote: netip.MustParseAddrPort("10.0.0.2:80")}
	}
	f := NewFake("t", "", mk(1, diag.StateEstablished, 1000), mk(2, diag.StateListen, 80), mk(3, diag.StateEstablished, 1001))
	c, _ := f.Dial()
	cookies := func(filt *diag.Filter) (got []uint64) {
		for s, err := range c.Sockets(context.Background(), filt) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, s.Cookie)
		}
		return got
	}
	if got := cookies(&diag.Filter{States: diag.Of(diag.StateEstablished)}); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("established: %v", got)
	}
	s := mk(3, diag.StateEstablished, 1001)
	if err := c.Destroy(&s); err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(&s); !errors.Is(err, diag.ErrNotFound) {
		t.Fatalf("second destroy: %v, want ErrNotFound", err)
	}
	if got := cookies(nil); len(got) != 2 || len(f.Destroyed()) != 1 {
		t.Fatalf("after a destroy: %v, destroyed %v", got, f.Destroyed())
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Pace = func(n int) {
		if n == 1 {
			cancel()
		}
	}
	n := 0
	var last error
	for _, err := range c.Sockets(ctx, nil) {
		if err != nil {
			last = err
			break
		}
		n++
	}
	if n != 1 || !errors.Is(last, context.Canceled) {
		t.Fatalf("cancelled after one: %d sockets, %v", n, last)
	}
}
