package probe

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server defaults, used where a Server field is zero.
const (
	// DefaultMaxClients is how many connections a Server serves at once.
	DefaultMaxClients = 1024
	// DefaultReadTimeout is how long a Server keeps a silent client: longer than
	// the longest idle period DiscoverIdle tries by default (DefaultIdleMax), so
	// the server never ends a measurement itself.
	DefaultReadTimeout = 65 * time.Minute
	// DefaultRate is how many pings per second a Server answers on one connection.
	DefaultRate = 20
	// DefaultHandshakeTimeout is how long a new connection has to send its first
	// whole frame. A client of this protocol sends its first ping as soon as it is
	// connected: one round trip, far below this even across the world.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultEvictAfter is how long a client must have been silent before a full
	// Server may close it to make room: longer than the interval of most
	// heartbeats, shorter than a DiscoverIdle measurement.
	DefaultEvictAfter = time.Minute
)

// Bounds of the busy answer: how long a refused or evicted connection is kept
// after its busy frame, reading what its client still sends until the client
// closes (so that our close sends no reset, which could overtake the frame), and
// how many may linger so at once; beyond that the connection is closed at once.
const (
	partLinger   = time.Second
	maxLingering = 64
)

// Server answers heartbeat pings: each well-formed ping is sent back as a pong of
// the same FrameSize bytes, so an answer is never larger than its request.
//
// It is bounded: at most MaxClients connections, a client silent for ReadTimeout
// is dropped, a connection that sends faster than Rate pings per second (after a
// burst of Rate) is answered at Rate and no faster, its extra pings waiting in its
// own socket buffers, and anything that is not a ping frame closes the
// connection. Each connection costs one goroutine and one frame buffer.
//
// It keeps room for clients that speak the protocol. A new connection must send a
// whole first frame within HandshakeTimeout or is closed. When MaxClients
// connections are open, a new one takes the place of the oldest that has not sent
// a whole frame yet, or else of the one silent longest if it has been silent for
// EvictAfter; if there is none, the new connection is refused. An evicted or
// refused connection gets one busy frame (TypeBusy), and is closed: the one frame
// a Server sends unasked, at most once per connection.
type Server struct {
	// MaxClients is how many connections are served at once; zero means
	// DefaultMaxClients.
	MaxClients int
	// ReadTimeout drops a client that sends nothing for this long (and one that
	// does not read its answers for this long); zero means DefaultReadTimeout.
	ReadTimeout time.Duration
	// Rate is how many pings per second one connection is answered; zero means
	// DefaultRate. The burst is the same number.
	Rate int
	// HandshakeTimeout drops a new connection that has not sent a whole frame
	// within it (or within ReadTimeout, if shorter); zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// EvictAfter is how long a client must have been silent before a full server
	// closes it to make room for a new one; zero means DefaultEvictAfter. At
	// ReadTimeout or more, a client that spoke is never evicted.
	EvictAfter time.Duration

	accepted, rejected, evicted, malformed, timedOut, answered, throttled atomic.Uint64
	active                                                                atomic.Int64
}

// ServerStats counts what a Server did since it started.
type ServerStats struct {
	// Accepted connections were served; Rejected ones arrived while MaxClients
	// clients were being served, none of them evictable, and got a busy frame.
	Accepted, Rejected uint64
	// Evicted connections were closed with a busy frame to make room for a new
	// one: they had not sent a whole frame yet, or had been silent for EvictAfter.
	Evicted uint64
	// Malformed connections sent something other than a ping frame and were closed.
	Malformed uint64
	// TimedOut connections were silent for ReadTimeout, or sent no whole first
	// frame within HandshakeTimeout, and were closed.
	TimedOut uint64
	// Answered is the number of pongs sent.
	Answered uint64
	// Throttled is the number of pings answered late because their connection
	// exceeded Rate.
	Throttled uint64
	// Active is the number of connections being served now.
	Active int64
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Accepted: s.accepted.Load(), Rejected: s.rejected.Load(), Evicted: s.evicted.Load(),
		Malformed: s.malformed.Load(), TimedOut: s.timedOut.Load(), Answered: s.answered.Load(),
		Throttled: s.throttled.Load(), Active: s.active.Load(),
	}
}

// limits are a Server's bounds with the defaults filled in.
type limits struct {
	maxClients                         int
	readTimeout, handshake, evictAfter time.Duration
	rate                               int
}

func (s *Server) limits() limits {
	l := limits{s.MaxClients, s.ReadTimeout, s.HandshakeTimeout, s.EvictAfter, s.Rate}
	if l.maxClients <= 0 {
		l.maxClients = DefaultMaxClients
	}
	if l.readTimeout <= 0 {
		l.readTimeout = DefaultReadTimeout
	}
	if l.handshake <= 0 {
		l.handshake = DefaultHandshakeTimeout
	}
	l.handshake = min(l.handshake, l.readTimeout)
	if l.evictAfter <= 0 {
		l.evictAfter = DefaultEvictAfter
	}
	if l.rate <= 0 {
		l.rate = DefaultRate
	}
	return l
}

// client is one served connection.
type client struct {
	c        net.Conn
	accepted time.Time
	// elem is the client's place in slots.waiting or slots.talking; nil once it
	// has been evicted. Guarded by slots.mu, as are spoke and heard.
	elem  *list.Element
	spoke bool      // a whole frame came
	heard time.Time // when the last frame came; before that, when it was accepted
	// gone is set, then kick closed, when the client is evicted: it ends the
	// connection's read and any wait for the rate limit.
	gone atomic.Bool
	kick chan struct{}
}

// slots are the connections served, in the order they are evicted: those that
// have not sent a whole frame, oldest first, then those that have, longest
// silent first. Each list is kept in order by moving a client to its back.
type slots struct {
	mu               sync.Mutex
	waiting, talking list.List
	open             map[net.Conn]struct{} // every connection a goroutine holds, for shutdown
	closed           bool
}

func (sl *slots) len() int { return sl.waiting.Len() + sl.talking.Len() }

// heard notes a whole frame from cl. It reports false if cl was evicted.
func (sl *slots) heard(cl *client) bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if cl.elem == nil {
		return false
	}
	cl.heard = time.Now()
	if !cl.spoke {
		cl.spoke = true
		sl.waiting.Remove(cl.elem)
		cl.elem = sl.talking.PushBack(cl)
	} else {
		sl.talking.MoveToBack(cl.elem)
	}
	return true
}

// leave takes cl out of the slots when its connection ends.
func (sl *slots) leave(cl *client) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if cl.elem != nil {
		if cl.spoke {
			sl.talking.Remove(cl.elem)
		} else {
			sl.waiting.Remove(cl.elem)
		}
		cl.elem = nil
	}
	delete(sl.open, cl.c)
}

// victim picks the client to evict for a new one, or nil: the oldest that has
// not sent a whole frame, unless its first frame is already in its socket
// buffer (it is about to speak), else the longest silent if silent for
// evictAfter. Called with mu held.
func (sl *slots) victim(now time.Time, evictAfter time.Duration) *client {
	n := 0
	for e := sl.waiting.Front(); e != nil && n < 8; e, n = e.Next(), n+1 {
		if cl := e.Value.(*client); buffered(cl.c) < FrameSize {
			return cl
		}
	}
	if e := sl.talking.Front(); e != nil {
		if cl := e.Value.(*client); now.Sub(cl.heard) >= evictAfter {
			return cl
		}
	}
	return nil
}

// evict takes cl out of the slots and wakes its goroutine, which sends the busy
// frame and closes. Called with mu held.
func (sl *slots) evict(cl *client) {
	if cl.spoke {
		sl.talking.Remove(cl.elem)
	} else {
		sl.waiting.Remove(cl.elem)
	}
	cl.elem = nil
	cl.gone.Store(true)
	close(cl.kick)
	// After gone is set: the goroutine checks gone after each deadline it sets.
	_ = cl.c.SetDeadline(time.Now())
}

// Serve accepts connections on l and answers them until ctx is done, then closes
// l and every connection, waits for their goroutines and returns nil. It returns
// an error if accepting fails for another reason; l is closed either way.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	lim := s.limits()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	sl := &slots{open: make(map[net.Conn]struct{})}
	var wg sync.WaitGroup
	lingering := make(chan struct{}, maxLingering)
	closeAll := func() {
		l.Close()
		sl.mu.Lock()
		sl.closed = true
		for c := range sl.open {
			c.Close()
		}
		sl.mu.Unlock()
	}
	// On shutdown, closing the listener ends Accept and closing each connection
	// ends its blocked read or write.
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		stop()
		cancel()
		closeAll()
		wg.Wait()
	}()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				continue
			}
			return fmt.Errorf("accept on %s: %w", l.Addr(), err)
		}
		backoff = 0
		if tc, ok := c.(*net.TCPConn); ok {
			// Keepalive from the server would refresh the path's idle timer.
			_ = tc.SetKeepAlive(false)
		}
		now := time.Now()
		cl := &client{c: c, accepted: now, heard: now, kick: make(chan struct{})}
		sl.mu.Lock()
		if sl.closed {
			sl.mu.Unlock()
			c.Close()
			continue
		}
		if sl.len() >= lim.maxClients {
			if v := sl.victim(now, lim.evictAfter); v != nil {
				sl.evict(v)
				s.evicted.Add(1)
			}
		}
		if sl.len() >= lim.maxClients {
			sl.open[c] = struct{}{}
			sl.mu.Unlock()
			s.rejected.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.part(c, lingering)
				sl.mu.Lock()
				delete(sl.open, c)
				sl.mu.Unlock()
			}()
			continue
		}
		cl.elem = sl.waiting.PushBack(cl)
		sl.open[c] = struct{}{}
		sl.mu.Unlock()
		s.accepted.Add(1)
		s.active.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.serveConn(ctx, cl, sl, lim) {
				s.active.Add(-1)
				s.part(c, lingering)
			} else {
				c.Close()
				s.active.Add(-1)
			}
			sl.leave(cl)
		}()
	}
}

// part sends the busy frame and closes c. With a place among the lingering, it
// first waits (partLinger at most) for the client to close its end, reading and
// dropping what it sends: closing with unread bytes would send a reset, which
// may reach the client before the frame does.
func (s *Server) part(c net.Conn, lingering chan struct{}) {
	defer c.Close()
	var b [FrameSize]byte
	Frame{Type: TypeBusy}.Encode(&b)
	// A deadline that has passed would fail the write: this one is fresh.
	if err := c.SetDeadline(time.Now().Add(partLinger)); err != nil {
		return
	}
	if _, err := c.Write(b[:]); err != nil {
		return
	}
	select {
	case lingering <- struct{}{}:
		defer func() { <-lingering }()
	default:
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	var sink [256]byte
	for n := 0; n < 64<<10; {
		k, err := c.Read(sink[:])
		n += k
		if err != nil {
			return
		}
	}
}

// isTemporary reports accept errors worth retrying (EMFILE, ENFILE, ECONNABORTED).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn answers one connection until it misbehaves, goes silent, closes, or
// ctx ends. It reports true if the connection was evicted and should get its busy
// frame (not when an answer was cut in the middle: the frame would not be one).
func (s *Server) serveConn(ctx context.Context, cl *client, sl *slots, lim limits) (evicted bool) {
	c := cl.c
	var buf [FrameSize]byte
	// A token bucket of rate tokens, refilled at rate per second.
	rate := lim.rate
	tokens, last := float64(rate), time.Now()
	deadline := cl.accepted.Add(lim.handshake)
	for {
		if err := c.SetReadDeadline(deadline); err != nil {
			return false
		}
		if cl.gone.Load() {
			return true
		}
		if _, err := io.ReadFull(c, buf[:]); err != nil {
			var ne net.Error
			switch {
			case cl.gone.Load():
				return true
			case errors.As(err, &ne) && ne.Timeout():
				s.timedOut.Add(1)
			case errors.Is(err, io.ErrUnexpectedEOF):
				s.malformed.Add(1) // a half-written frame, then the end
			}
			return false
		}
		f, err := Decode(buf[:])
		if err != nil || f.Type != TypePing {
			s.malformed.Add(1)
			return false
		}
		if !sl.heard(cl) {
			return true
		}
		now := time.Now()
		deadline = now.Add(lim.readTimeout)
		tokens = min(float64(rate), tokens+now.Sub(last).Seconds()*float64(rate))
		last = now
		if tokens < 1 {
			// Pace the connection instead of reading faster: what it sends beyond
			// the rate waits in its own socket buffers, then TCP flow control
			// stops the sender. No memory or CPU is spent on it here.
			s.throttled.Add(1)
			wait := time.Duration((1 - tokens) / float64(rate) * float64(time.Second))
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-cl.kick:
				t.Stop()
				return true
			case <-t.C:
			}
			now = time.Now()
			tokens = min(float64(rate), tokens+now.Sub(last).Seconds()*float64(rate))
			last = now
		}
		tokens--
		// The answer is the request with its type changed: never larger.
		buf[offType] = byte(TypePong)
		if err := c.SetWriteDeadline(time.Now().Add(lim.readTimeout)); err != nil {
			return false
		}
		if cl.gone.Load() {
			return true
		}
		if _, err := c.Write(buf[:]); err != nil {
			return false
		}
		s.answered.Add(1)
	}
}
