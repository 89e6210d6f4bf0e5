package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrNoAnswer reports a ping whose pong did not come back within its timeout.
var ErrNoAnswer = errors.New("no answer in time")

// ErrBusy reports the server's busy frame: it is full, and closed this connection
// rather than serve it. The server is alive; it refused this client.
var ErrBusy = errors.New("server busy: it serves all the clients it takes, and closed this connection")

// Pinger sends pings on one connection and reads their pongs. It keeps a frame
// read only in part (a deadline in the middle of one) so the stream stays in step.
// It is not safe for concurrent use.
type Pinger struct {
	c   net.Conn
	buf [FrameSize]byte
	n   int // bytes of buf holding the start of the next frame
	seq uint64
}

// NewPinger sends pings on c.
func NewPinger(c net.Conn) *Pinger { return &Pinger{c: c} }

// Ping sends the next ping and waits up to timeout for its pong, skipping late
// pongs of earlier pings. It returns the round-trip time, or an error:
// ErrNoAnswer when the time ran out, ErrBusy when the server refused the
// connection, ErrMalformed when the server sent something that is neither, ctx's
// error when ctx ended, or the connection's error (a reset, the server closing,
// TCP_USER_TIMEOUT).
func (p *Pinger) Ping(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	p.seq++
	sent := time.Now()
	deadline := sent.Add(timeout)
	if err := p.c.SetDeadline(deadline); err != nil {
		return 0, err
	}
	// An ended ctx moves the deadline to now, which ends a blocked read or write.
	stop := context.AfterFunc(ctx, func() { p.c.SetDeadline(time.Now()) })
	defer stop()
	var out [FrameSize]byte
	Frame{Type: TypePing, Seq: p.seq, Stamp: sent.UnixNano()}.Encode(&out)
	if _, err := p.c.Write(out[:]); err != nil {
		return 0, p.classify(ctx, fmt.Errorf("send ping %d: %w", p.seq, err))
	}
	for {
		for p.n < FrameSize {
			k, err := p.c.Read(p.buf[p.n:])
			p.n += k
			if err != nil && p.n < FrameSize {
				return 0, p.classify(ctx, fmt.Errorf("wait for pong %d: %w", p.seq, err))
			}
		}
		p.n = 0
		f, err := Decode(p.buf[:])
		if err != nil {
			return 0, err
		}
		if f.Type == TypeBusy {
			return 0, fmt.Errorf("ping %d: %w", p.seq, ErrBusy)
		}
		if f.Type != TypePong {
			return 0, fmt.Errorf("%w: the server sent a %v", ErrMalformed, f.Type)
		}
		if f.Seq == p.seq && f.Stamp == sent.UnixNano() {
			return time.Since(sent), nil
		}
		if f.Seq > p.seq {
			return 0, fmt.Errorf("%w: pong %d answers no ping sent (last %d)", ErrMalformed, f.Seq, p.seq)
		}
		// A late pong of an earlier ping: skip it.
	}
}

// classify turns a deadline into ErrNoAnswer or ctx's error.
func (p *Pinger) classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w (%v)", ErrNoAnswer, err)
	}
	return err
}

// Config is how Run beats.
type Config struct {
	// Interval is the time between pings; zero means 1 s.
	Interval time.Duration
	// Timeout is how long a ping waits for its pong before it is a miss; zero
	// means Interval. It must not exceed Interval: each beat ends before the next.
	Timeout time.Duration
	// Misses is how many beats in a row unanswered declare the peer dead; zero
	// means 3.
	Misses int
	// Count ends the run after that many beats; zero means until ctx ends or the
	// peer is declared dead.
	Count int
}

func (c Config) withDefaults() (Config, error) {
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = c.Interval
	}
	if c.Misses <= 0 {
		c.Misses = 3
	}
	if c.Count < 0 {
		return c, fmt.Errorf("count %d: want 0 (no limit) or more", c.Count)
	}
	if c.Timeout > c.Interval {
		return c, fmt.Errorf("timeout %v exceeds the interval %v: each beat must end before the next", c.Timeout, c.Interval)
	}
	return c, nil
}

// DetectWithin is the longest Run takes to declare dead a peer that stops
// answering: a ping goes out within one Interval, then Misses of them go
// unanswered, the last for Timeout.
func (c Config) DetectWithin() time.Duration {
	c, _ = c.withDefaults()
	return time.Duration(c.Misses)*c.Interval + c.Timeout
}

// Beat is the result of one ping.
type Beat struct {
	// Seq is the ping's sequence number, from 1.
	Seq uint64
	// OK says the pong came back within the timeout.
	OK bool
	// RTT is the round-trip time of an answered ping.
	RTT time.Duration
	// Err is why a ping was missed: ErrNoAnswer, or the connection's error.
	Err error
}

// Verdict is the outcome of a run.
type Verdict struct {
	// Alive is false when the peer was declared dead.
	Alive bool
	// Reason says why the peer was declared dead.
	Reason string
	// Sent and Received count pings and their pongs.
	Sent, Received int
	// RTTMin, RTTAvg and RTTMax are over the answered pings.
	RTTMin, RTTAvg, RTTMax time.Duration
}

// Loss is the fraction of pings unanswered, 0 to 1.
func (v Verdict) Loss() float64 {
	if v.Sent == 0 {
		return 0
	}
	return float64(v.Sent-v.Received) / float64(v.Sent)
}

// Run beats on c until cfg.Count beats are done, the peer is declared dead or
// ctx ends, calling onBeat (if not nil) after each beat. Run owns c and closes it.
//
// A peer is dead after cfg.Misses beats in a row go unanswered, or at once when
// the connection fails (reset, closed by the server, TCP_USER_TIMEOUT). An ended
// ctx is not a failure: the verdict covers the beats that finished. The error is
// for what is not about liveness: a bad Config, a server that refused the
// connection (ErrBusy: it is alive, and full), or one that does not speak this
// protocol.
func Run(ctx context.Context, c net.Conn, cfg Config, onBeat func(Beat)) (Verdict, error) {
	defer c.Close()
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Verdict{}, err
	}
	p := NewPinger(c)
	v := Verdict{Alive: true}
	var sum time.Duration
	misses := 0
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for cfg.Count == 0 || v.Sent < cfg.Count {
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return v, nil
			case <-timer.C:
			}
		}
		next = next.Add(cfg.Interval)
		rtt, err := p.Ping(ctx, cfg.Timeout)
		if ctx.Err() != nil {
			return v, nil
		}
		if errors.Is(err, ErrMalformed) {
			return v, fmt.Errorf("%s does not speak the tcpkeep heartbeat: %w", c.RemoteAddr(), err)
		}
		if errors.Is(err, ErrBusy) {
			return v, err
		}
		v.Sent++
		b := Beat{Seq: p.seq, OK: err == nil, RTT: rtt, Err: err}
		if err == nil {
			v.Received++
			misses = 0
			sum += rtt
			if v.Received == 1 || rtt < v.RTTMin {
				v.RTTMin = rtt
			}
			v.RTTMax = max(v.RTTMax, rtt)
			v.RTTAvg = sum / time.Duration(v.Received)
		} else {
			misses++
		}
		if onBeat != nil {
			onBeat(b)
		}
		switch {
		case err != nil && !errors.Is(err, ErrNoAnswer):
			v.Alive, v.Reason = false, err.Error()
			return v, nil
		case misses >= cfg.Misses:
			v.Alive, v.Reason = false, fmt.Sprintf("%d pings in a row unanswered within %v", misses, cfg.Timeout)
			return v, nil
		}
		if now := time.Now(); next.Before(now) {
			next = now // a slow beat delays the schedule instead of bunching pings
		}
	}
	return v, nil
}
