package probe

import (
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
)

// Server answers heartbeat pings: each well-formed ping is sent back as a pong of
// the same FrameSize bytes, so an answer is never larger than its request.
//
// It is bounded: at most MaxClients connections (more are closed as soon as they
// are accepted), a client silent for ReadTimeout is dropped, a connection that
// sends faster than Rate pings per second (after a burst of Rate) is answered at
// Rate and no faster, its extra pings waiting in its own socket buffers, and
// anything that is not a ping frame closes the connection. Each connection costs
// one goroutine and one frame buffer.
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

	accepted, rejected, malformed, timedOut, answered, throttled atomic.Uint64
	active                                                       atomic.Int64
}

// ServerStats counts what a Server did since it started.
type ServerStats struct {
	// Accepted connections were served; Rejected ones arrived while MaxClients
	// were already being served and were closed at once.
	Accepted, Rejected uint64
	// Malformed connections sent something other than a ping frame and were closed.
	Malformed uint64
	// TimedOut connections were silent for ReadTimeout and were closed.
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
		Accepted: s.accepted.Load(), Rejected: s.rejected.Load(), Malformed: s.malformed.Load(),
		TimedOut: s.timedOut.Load(), Answered: s.answered.Load(), Throttled: s.throttled.Load(),
		Active: s.active.Load(),
	}
}

func (s *Server) limits() (maxClients int, readTimeout time.Duration, rate int) {
	maxClients, readTimeout, rate = s.MaxClients, s.ReadTimeout, s.Rate
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	if readTimeout <= 0 {
		readTimeout = DefaultReadTimeout
	}
	if rate <= 0 {
		rate = DefaultRate
	}
	return maxClients, readTimeout, rate
}

// Serve accepts connections on l and answers them until ctx is done, then closes
// l and every connection, waits for their goroutines and returns nil. It returns
// an error if accepting fails for another reason; l is closed either way.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	maxClients, readTimeout, rate := s.limits()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
		wg    sync.WaitGroup
	)
	// On shutdown, closing the listener ends Accept and closing each connection
	// ends its blocked read or write.
	stop := context.AfterFunc(ctx, func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer func() {
		stop()
		cancel()
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
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
		mu.Lock()
		if len(conns) >= maxClients || ctx.Err() != nil {
			mu.Unlock()
			s.rejected.Add(1)
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		s.accepted.Add(1)
		s.active.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c, readTimeout, rate)
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			s.active.Add(-1)
		}()
	}
}

// isTemporary reports accept errors worth retrying (EMFILE, ENFILE, ECONNABORTED).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn answers one connection until it misbehaves, goes silent, closes, or
// ctx ends.
func (s *Server) serveConn(ctx context.Context, c net.Conn, readTimeout time.Duration, rate int) {
	var buf [FrameSize]byte
	// A token bucket of rate tokens, refilled at rate per second.
	tokens, last := float64(rate), time.Now()
	for {
		if err := c.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
			return
		}
		if _, err := io.ReadFull(c, buf[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.timedOut.Add(1)
			} else if errors.Is(err, io.ErrUnexpectedEOF) {
				s.malformed.Add(1) // a half-written frame, then the end
			}
			return
		}
		f, err := Decode(buf[:])
		if err != nil || f.Type != TypePing {
			s.malformed.Add(1)
			return
		}
		now := time.Now()
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
				return
			case <-t.C:
			}
			now = time.Now()
			tokens = min(float64(rate), tokens+now.Sub(last).Seconds()*float64(rate))
			last = now
		}
		tokens--
		// The answer is the request with its type changed: never larger.
		buf[offType] = byte(TypePong)
		if err := c.SetWriteDeadline(time.Now().Add(readTimeout)); err != nil {
			return
		}
		if _, err := c.Write(buf[:]); err != nil {
			return
		}
		s.answered.Add(1)
	}
}
