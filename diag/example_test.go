package diag_test

import (
	"context"
	"fmt"

	"github.com/tcpkeep/tcpkeep/diag"
)

// Dump the established TCP sockets of the namespace this program runs in (a
// nil Namespace), straight from the kernel: the Socket is reused, so copy what
// you keep.
func ExampleConn_Sockets() {
	c, err := diag.Dial(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	f := &diag.Filter{States: diag.Of(diag.StateEstablished)}
	for s, err := range c.Sockets(context.Background(), f) {
		if err != nil {
			fmt.Println(err)
			return
		}
		armed, known := s.KeepaliveArmed()
		fmt.Println(s.Local, s.Remote, s.Idle(), armed, known)
	}
}

// Filters run in the kernel. Their spellings are ss's and the kernel's.
func ExampleFilter() {
	states, _ := diag.ParseStates("established,close-wait")
	ports, _ := diag.ParsePortRange("8000-8999")
	dst, _ := diag.ParsePrefix("10.0.0.0/8")
	f := &diag.Filter{States: states, SPort: ports, Dst: dst}
	fmt.Println(f.Check() == nil, f.States.Has(diag.StateCloseWait), f.SPort, f.Dst)
	// Output: true true {8000 8999} 10.0.0.0/8
}

// Close one socket, by its exact identity: a new connection that took its
// addresses since the dump is not touched (ErrNotFound). It needs CAP_NET_ADMIN.
func ExampleConn_Destroy() {
	c, err := diag.Dial(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for s, err := range c.Sockets(context.Background(), &diag.Filter{States: diag.Of(diag.StateCloseWait)}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		if err := c.Destroy(s); err != nil {
			fmt.Println(err)
		}
	}
}
