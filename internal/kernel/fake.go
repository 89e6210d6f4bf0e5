package kernel

import (
	"context"
	"fmt"
	"iter"
	"sync"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Fake is a namespace that exists only in memory: its tunables are files under
// Sys (a copy of /proc/sys, as sysctl.ProcSys reads and writes them), and its
// sockets are Sockets. Dumps apply the filter as the kernel does (diag.Filter.
// Match); Destroy removes a socket. It is safe for concurrent use.
type Fake struct {
	// NSName is how the namespace is named.
	NSName string
	// Sys is the root of its sysctl tree.
	Sys sysctl.ProcSys
	// Host says it is the host's namespace.
	Host bool
	// DestroyErr, when set, is what every Destroy returns.
	DestroyErr error
	// Pace, when set, is called before each socket a dump hands out, with how
	// many it handed out before: a test can end a context there.
	Pace func(n int)

	mu        sync.Mutex
	sockets   []diag.Socket
	destroyed []uint64
}

// NewFake returns a namespace named name with these tunables and sockets.
func NewFake(name string, sys sysctl.ProcSys, sockets ...diag.Socket) *Fake {
	return &Fake{NSName: name, Sys: sys, sockets: sockets}
}

// Add adds sockets.
func (f *Fake) Add(s ...diag.Socket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sockets = append(f.sockets, s...)
}

// Set replaces the sockets: what the next dump hands out.
func (f *Fake) Set(s ...diag.Socket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sockets = append([]diag.Socket(nil), s...)
}

// Destroyed lists the cookies of the sockets destroyed, in order.
func (f *Fake) Destroyed() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.destroyed...)
}

// Name is NSName.
func (f *Fake) Name() string { return f.NSName }

// Tunables reads Sys.
func (f *Fake) Tunables() (sysctl.Tunables, error) { return f.Sys.Read() }

// Apply writes Sys (and the file c names).
func (f *Fake) Apply(c sysctl.Change) (sysctl.Keepalive, error) { return f.Sys.Apply(c) }

// IsHost is Host.
func (f *Fake) IsHost() (bool, error) { return f.Host, nil }

// Dial returns a connection to the fake.
func (f *Fake) Dial() (Conn, error) { return fakeConn{f}, nil }

type fakeConn struct{ f *Fake }

func (c fakeConn) Close() error { return nil }

// Sockets hands out copies of the sockets the filter selects, one reused
// Socket as diag does, and ends with ctx's error as diag does.
func (c fakeConn) Sockets(ctx context.Context, filt *diag.Filter) iter.Seq2[*diag.Socket, error] {
	return func(yield func(*diag.Socket, error) bool) {
		if err := filt.Check(); err != nil {
			yield(nil, err)
			return
		}
		c.f.mu.Lock()
		socks := append([]diag.Socket(nil), c.f.sockets...)
		c.f.mu.Unlock()
		var s diag.Socket
		n := 0
		for i := range socks {
			if !filt.Match(&socks[i]) {
				continue
			}
			if c.f.Pace != nil {
				c.f.Pace(n)
			}
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			s = socks[i]
			n++
			if !yield(&s, nil) {
				return
			}
		}
	}
}

// Destroy removes the socket with s's cookie, or says it is gone.
func (c fakeConn) Destroy(s *diag.Socket) error {
	if c.f.DestroyErr != nil {
		return c.f.DestroyErr
	}
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	for i := range c.f.sockets {
		if c.f.sockets[i].Cookie == s.Cookie {
			c.f.sockets = append(c.f.sockets[:i], c.f.sockets[i+1:]...)
			c.f.destroyed = append(c.f.destroyed, s.Cookie)
			return nil
		}
	}
	return fmt.Errorf("destroy %s: %w", s.ID(), diag.ErrNotFound)
}
