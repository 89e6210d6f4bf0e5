package kill_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// served is one connection from the test to a program: the program's
// descriptor and the test's end.
type served struct {
	fd     int
	client *net.TCPConn
}

// serveConn connects to the program's listener and has the program accept
// and watch the connection.
func serveConn(ns *testnet.NS, srv *testnet.Program, lfd int, port uint16) served {
	c := ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	fd := srv.Accept(lfd)
	srv.Watch(fd)
	return served{fd, c}
}

// only selects the server end of one connection.
func only(port uint16, c *net.TCPConn) *diag.Filter {
	cp := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	return &diag.Filter{States: diag.Of(diag.StateEstablished), SPort: diag.PortRange{Lo: port, Hi: port}, DPort: diag.PortRange{Lo: cp, Hi: cp}}
}

// wantEOF checks that the test's end of a connection reads end of file: the
// program's side sent a FIN.
func wantEOF(t *testing.T, c *net.TCPConn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the peer reads %v, want EOF", err)
	}
}

// TestCloseViaOwner: forced, and as the fallback when SOCK_DESTROY is
// unsupported, a connection is shut down through its owner: the owner's
// reads end with end of file, the peer gets a FIN; a connection beside it
// is untouched.
func TestCloseViaOwner(t *testing.T) {
	ns := testnet.NewNS(t)
	srv := ns.Program()
	lfd, port := srv.Listen("127.0.0.1:0")
	forced, fallback, bystander := serveConn(ns, srv, lfd, port), serveConn(ns, srv, lfd, port), serveConn(ns, srv, lfd, port)

	d := dialNS(t, ns)
	closer := &kill.OwnerCloser{Destroyer: d, Force: true}
	defer closer.Close()
	acts, sum, err := run(t, ns, kill.Config{Filter: only(port, forced.client), All: true}, func(kill.Destroyer) kill.Destroyer { return closer })
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].result != kill.Closed || sum.Closed != 1 || closer.ViaOwner() != 1 || closer.FellBack() {
		t.Fatalf("forced: actions %+v summary %+v via owner %d, want one closed through the owner", acts, sum, closer.ViaOwner())
	}
	if e, ok := srv.WaitEnded(forced.fd, 5*time.Second); !ok || e.Result != "eof" {
		t.Errorf("forced: the owner's reads: %+v (ended %v), want eof", e, ok)
	}
	wantEOF(t, forced.client)

	// SOCK_DESTROY refused as by a kernel without CONFIG_INET_DIAG_DESTROY.
	unsupported := destroyFunc(func(s *diag.Socket) error {
		return fmt.Errorf("destroy %s: %w", s.ID(), diag.ErrDestroyUnsupported)
	})
	fb := &kill.OwnerCloser{Destroyer: unsupported}
	defer fb.Close()
	acts, _, err = run(t, ns, kill.Config{Filter: only(port, fallback.client), All: true}, func(kill.Destroyer) kill.Destroyer { return fb })
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].result != kill.Closed || !fb.FellBack() || fb.ViaOwner() != 1 {
		t.Fatalf("fallback: actions %+v, fell back %v, want one closed through the owner", acts, fb.FellBack())
	}
	if e, ok := srv.WaitEnded(fallback.fd, 5*time.Second); !ok || e.Result != "eof" {
		t.Errorf("fallback: the owner's reads: %+v (ended %v), want eof", e, ok)
	}
	wantEOF(t, fallback.client)

	// A listener shut down through its owner stops listening.
	lfd2, port2 := srv.Listen("127.0.0.1:0")
	acts, _, err = run(t, ns, kill.Config{Filter: portFilter(port2, diag.StateListen), All: true, Listeners: true}, func(kill.Destroyer) kill.Destroyer { return closer })
	if err != nil || len(acts) != 1 || acts[0].result != kill.Closed {
		t.Fatalf("listener: actions %+v %v, want it closed through the owner", acts, err)
	}
	if n := len(dump(t, ns, portFilter(port2, diag.StateListen))); n != 0 {
		t.Errorf("the listener at fd %d still listens", lfd2)
	}
	var refused error
	ns.Do(func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port2), 5*time.Second)
		if err == nil {
			c.Close()
		}
		refused = err
		return nil
	})
	if !errors.Is(refused, syscall.ECONNREFUSED) {
		t.Errorf("connecting to the shut listener: %v, want ECONNREFUSED", refused)
	}

	if e, ok := srv.Ended(bystander.fd); ok {
		t.Errorf("the bystander connection ended too: %+v", e)
	}
	srv.Write(bystander.fd, "alive")
	bystander.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(bystander.client, make([]byte, 5)); err != nil {
		t.Errorf("the bystander connection: %v", err)
	}
}

// TestCloseViaOwnerChecksIdentity: between the scan of /proc and the close,
// the owner puts another connection at the descriptor number. If the socket
// is gone from the owner, the run says gone and the new connection is not
// touched; if the owner moved it to another descriptor, it is closed there.
func TestCloseViaOwnerChecksIdentity(t *testing.T) {
	ns := testnet.NewNS(t)
	srv := ns.Program()
	lfd, port := srv.Listen("127.0.0.1:0")
	other := ns.Listen("127.0.0.1:0")
	otherCh := make(chan net.Conn, 2) // accepted, not echoed: the test reads them
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			otherCh <- c
		}
	}()
	replaced, moved := serveConn(ns, srv, lfd, port), serveConn(ns, srv, lfd, port)

	for _, tc := range []struct {
		name   string
		conn   served
		move   bool
		result kill.Result
	}{
		{"replaced", replaced, false, kill.Gone},
		{"moved", moved, true, kill.Closed},
	} {
		f := proc.NewFinder("/proc", 0)
		defer f.Close()
		if err := f.Scan(); err != nil { // the scan sees the socket at conn.fd
			t.Fatal(err)
		}
		closer := &kill.OwnerCloser{Force: true, Owners: f}
		movedTo := -1
		hook := destroyFunc(func(s *diag.Socket) error {
			if tc.move {
				movedTo = srv.Move(tc.conn.fd, other.Addr().String())
			} else {
				srv.Replace(tc.conn.fd, other.Addr().String())
			}
			return closer.Destroy(s)
		})
		acts, _, err := run(t, ns, kill.Config{Filter: only(port, tc.conn.client), All: true}, func(kill.Destroyer) kill.Destroyer { return hook })
		if err != nil {
			t.Fatal(err)
		}
		if len(acts) != 1 || acts[0].result != tc.result {
			t.Fatalf("%s: actions %+v, want %s", tc.name, acts, tc.result)
		}
		// The connection now at the old number is intact both ways.
		newConn := accepted(t, otherCh)
		srv.Write(tc.conn.fd, "intact")
		newConn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(newConn, make([]byte, 6)); err != nil {
			t.Errorf("%s: the connection at the reused descriptor: %v", tc.name, err)
		}
		if tc.move {
			srv.Watch(movedTo)
			if e, ok := srv.WaitEnded(movedTo, 5*time.Second); !ok || e.Result != "eof" {
				t.Errorf("moved: the owner's reads on fd %d: %+v (ended %v), want eof", movedTo, e, ok)
			}
			wantEOF(t, tc.conn.client)
		}
	}
	// Where the process holds the socket nowhere, the mismatch is what Dup
	// reports, and Classify calls it gone.
	if r, _ := kill.Classify(fmt.Errorf("x: %w", proc.ErrIdentityMismatch)); r != kill.Gone {
		t.Errorf("Classify(ErrIdentityMismatch) = %s, want gone", r)
	}
	if r, _ := kill.Classify(errors.New("y")); r != kill.Error {
		t.Errorf("Classify(other) = %s, want error", r)
	}
}
