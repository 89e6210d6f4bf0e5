package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Defaults of a Walker.
const (
	// DefaultParallel is how many namespaces a Walker visits at once unless
	// told, or GOMAXPROCS where that is fewer: a namespace's visit is mostly the
	// kernel's dump, which more visits than CPUs do not speed up.
	DefaultParallel = 4
	// DefaultBuffer is how many bytes of output a namespace waiting its turn
	// holds unless told.
	DefaultBuffer = 256 << 10
)

// Walker visits many namespaces, a few at once, and writes what each visit
// writes in the order of the list, one namespace after the other, never two
// interleaved.
//
// Output streams: the namespace whose turn it is writes straight through; one
// behind it holds up to Buffer bytes and then waits for its turn. At most
// Parallel namespaces are started and not yet written out, so the memory a walk
// holds is at most Parallel x Buffer, however large a namespace's output.
type Walker struct {
	// Parallel is how many namespaces are visited at once (0: DefaultParallel,
	// or GOMAXPROCS if fewer).
	Parallel int
	// Enter runs each visit on a locked OS thread inside its namespace, so
	// everything fn does on its own goroutine happens there (/proc/sys/net
	// files, sockets, sock_diag). Without Enter, fn runs on an ordinary goroutine
	// and reaches the namespace through Visit.Fd (a dial) or Visit.Do.
	Enter bool
	// Buffer is how many bytes of output a namespace behind the one being
	// written may hold before its writes wait (0: DefaultBuffer).
	Buffer int
	// Done, if set, is called once per visited namespace, in list order, after
	// all of its output is written and before any of the next one's: one call at
	// a time, so it may write to the walk's writer (say, a record for a
	// namespace that was gone).
	Done func(Result)
}

// Visit is one namespace being visited.
type Visit struct {
	// Namespace is the namespace visited.
	Namespace
	// Index is its place in the walked list.
	Index int
	// Out is where the visit writes its output; the walk orders it. It is for
	// the visit's own goroutine, like any io.Writer.
	Out  io.Writer
	file *os.File // the namespace, opened and checked to be the one found
	tid  int      // the thread inside it, with Enter
}

// Fd is a descriptor of the namespace (for diag.Config.NetNS, setns), valid
// until the visit returns. It refers to the namespace that was found, checked
// by inode: a name deleted and made again, or a PID reused, is not followed.
func (v *Visit) Fd() int { return int(v.file.Fd()) }

// Open returns a new descriptor of the namespace (see Fd) that the caller
// closes.
func (v *Visit) Open() (*os.File, error) {
	fd, err := unix.FcntlInt(v.file.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate the namespace file: %w", err)
	}
	return os.NewFile(uintptr(fd), v.file.Name()), nil
}

// Do runs fn inside the namespace: at once when the calling goroutine is the
// visit's and Enter put it there (or the namespace is tcpkeep's own), else on a
// locked OS thread that enters it and comes back, as NS.Do does. A Visit
// therefore serves as a sysctl.Namespace.
func (v *Visit) Do(fn func() error) error {
	if v.Self || (v.tid != 0 && unix.Gettid() == v.tid) {
		return fn()
	}
	return onThreadIn(v.file, v.Name, fn)
}

// Result is how the visit of one namespace ended.
type Result struct {
	// Namespace is the namespace visited.
	Namespace Namespace
	// Index is its place in the walked list.
	Index int
	// Err is nil, or why the visit failed: ErrGone (the namespace went away
	// since it was found), a *PermissionError (MissingCapability says which
	// capability would have allowed it), the context's error, or fn's error.
	Err error
	// Wrote is how many bytes the visit wrote to its Out.
	Wrote int64
}

// Walk runs fn once for each namespace in list, at most Parallel at once, and
// writes what each writes to its Out to out, in list order. A namespace that
// cannot be opened or entered is not visited: its Result says why, and the walk
// goes on with the rest.
//
// When ctx ends, no further namespace is started, writes fail with ctx's
// error, and Walk returns once the visits under way have: what was written
// before is in out, in order. Walk's error is ctx's, or the first error
// writing to out (which stops the walk the same way); the results say how each
// namespace fared, one per namespace of list (those never started carry that
// error and are not passed to Done).
func (w *Walker) Walk(ctx context.Context, list []Namespace, out io.Writer, fn func(ctx context.Context, v *Visit) error) ([]Result, error) {
	return w.walkWith(ctx, list, out, fn, nil)
}

// walkWith is Walk, handing its sequencer to tests through sp.
func (w *Walker) walkWith(ctx context.Context, list []Namespace, out io.Writer, fn func(ctx context.Context, v *Visit) error, sp **sequencer) ([]Result, error) {
	p := w.Parallel
	if p <= 0 {
		p = min(DefaultParallel, runtime.GOMAXPROCS(0))
	}
	limit := w.Buffer
	if limit <= 0 {
		limit = DefaultBuffer
	}
	results := make([]Result, len(list))
	s := newSequencer(ctx, out, len(list), p, limit, func(i int) {
		if w.Done != nil {
			w.Done(results[i])
		}
	})
	if sp != nil {
		*sp = s
	}
	stop := context.AfterFunc(ctx, s.wake)
	defer stop()

	var wg sync.WaitGroup
	started := 0
	for i := range list {
		if !s.acquire(ctx) {
			break
		}
		started++
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := w.visit(ctx, s, i, list[i], fn)
			s.finish(i, &results[i], r)
		}()
	}
	wg.Wait()
	err := ctx.Err()
	if err != nil && started == len(list) && !slices.ContainsFunc(results, func(r Result) bool { return errors.Is(r.Err, err) }) {
		err = nil // ended after every visit was done: nothing was cut short
	}
	if werr := s.writeErr(); werr != nil {
		err = werr
	}
	for i := started; i < len(list); i++ {
		results[i] = Result{Namespace: list[i], Index: i, Err: err}
	}
	return results, err
}

// visit opens (and, with Enter, enters) one namespace and runs fn there.
func (w *Walker) visit(ctx context.Context, s *sequencer, i int, n Namespace, fn func(context.Context, *Visit) error) Result {
	r := Result{Namespace: n, Index: i}
	v := &Visit{Namespace: n, Index: i, Out: slotWriter{s, i}}
	if !w.Enter {
		// The file of tcpkeep's own namespace is the calling thread's: keep the
		// goroutine on one thread while opening it.
		runtime.LockOSThread()
		f, err := n.openChecked()
		runtime.UnlockOSThread()
		if err != nil {
			r.Err = err
			return r
		}
		defer f.Close()
		v.file = f
		r.Err = fn(ctx, v)
		return r
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// If the thread cannot come back it stays locked and dies with this
		// goroutine, instead of serving other code in the wrong namespace.
		runtime.LockOSThread()
		f, err := n.openChecked()
		if err != nil {
			runtime.UnlockOSThread()
			r.Err = err
			return
		}
		defer f.Close()
		v.file = f
		back := func() error { return nil }
		if !n.Self {
			if back, err = enterFile(f, n.Name); err != nil {
				runtime.UnlockOSThread()
				r.Err = err
				return
			}
		}
		v.tid = unix.Gettid()
		r.Err = fn(ctx, v)
		v.tid = 0
		if err := back(); err != nil {
			r.Err = errors.Join(r.Err, err)
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
	return r
}

// openChecked opens the namespace and checks by inode that it is the one found:
// by its name or its process, else through another process seen in it. The
// file of tcpkeep's own namespace is the calling thread's, so call it on a
// thread that has entered nothing.
func (n Namespace) openChecked() (*os.File, error) {
	paths := []string{n.Path}
	for _, pid := range n.alt {
		paths = append(paths, "/proc/"+strconv.Itoa(pid)+"/ns/net")
	}
	if n.PID > 0 && n.Path != "/proc/"+strconv.Itoa(n.PID)+"/ns/net" {
		paths = append(paths, "/proc/"+strconv.Itoa(n.PID)+"/ns/net")
	}
	var refused error
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			if isDenied(err) && refused == nil {
				refused = denied("open", n.Name, p, err, openCap(p))
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || (n.Ino != 0 && (st.Dev != n.Dev || st.Ino != n.Ino)) {
			f.Close()
			continue
		}
		return f, nil
	}
	if refused != nil {
		return nil, refused
	}
	return nil, ErrGone
}

// openCap is the capability opening a namespace file may need: CAP_SYS_PTRACE
// for another user's process's, none for a name (nsfs files are world-readable).
func openCap(path string) Capability {
	if strings.HasPrefix(path, "/proc/") {
		return CapSysPtrace
	}
	return ""
}

// enterFile switches the locked calling thread into the namespace f refers to
// and returns how to come back.
func enterFile(f *os.File, name string) (back func() error, err error) {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open the current namespace: %w", err)
	}
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		orig.Close()
		if isDenied(err) {
			return nil, denied("enter", name, f.Name(), err, CapSysAdmin)
		}
		return nil, fmt.Errorf("%w: %w", ErrEnter, err)
	}
	return func() error {
		defer orig.Close()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("leave the namespace: %w", err)
		}
		return nil
	}, nil
}

// onThreadIn runs fn on a new locked OS thread inside the namespace f refers
// to, and brings the thread back (or lets it die with its goroutine).
func onThreadIn(f *os.File, name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := enterFile(f, name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := back(); err != nil {
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// slotWriter is a visit's Out.
type slotWriter struct {
	s *sequencer
	i int
}

func (w slotWriter) Write(p []byte) (int, error) { return w.s.write(w.i, p) }

// sequencer puts the output of concurrent visits in list order. The slot at
// head writes straight to out; slots behind it buffer up to limit bytes each,
// then wait. A slot is released (and a new visit may start) only once its
// output is written out, so at most par slots hold buffers.
type sequencer struct {
	ctx   context.Context
	out   io.Writer
	limit int
	done  func(int) // Walker.Done for a slot, in order
	free  chan struct{}

	mu        sync.Mutex
	cond      sync.Cond
	head      int
	slots     []slot
	advancing bool  // a goroutine is writing out finished slots
	werr      error // the first error writing to out: sticky
	spare     [][]byte
	buffered  int // bytes held behind the head
	peak      int // the most ever held: for tests
}

type slot struct {
	buf      []byte
	finished bool
	wrote    int64
}

func newSequencer(ctx context.Context, out io.Writer, n, par, limit int, done func(int)) *sequencer {
	s := &sequencer{ctx: ctx, out: out, limit: limit, done: done, free: make(chan struct{}, par), slots: make([]slot, n)}
	s.cond.L = &s.mu
	for range par {
		s.free <- struct{}{}
	}
	return s
}

// acquire waits for room to start a visit; false when the walk must stop.
func (s *sequencer) acquire(ctx context.Context) bool {
	select {
	case <-s.free:
	case <-ctx.Done():
		return false
	}
	if ctx.Err() != nil || s.writeErr() != nil {
		s.free <- struct{}{}
		return false
	}
	return true
}

func (s *sequencer) wake() {
	s.mu.Lock()
	s.cond.Broadcast()
	s.mu.Unlock()
}

func (s *sequencer) writeErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.werr
}

func (s *sequencer) write(i int, p []byte) (int, error) {
	s.mu.Lock()
	for {
		if s.werr != nil {
			err := s.werr
			s.mu.Unlock()
			return 0, err
		}
		if err := s.ctx.Err(); err != nil {
			s.mu.Unlock()
			return 0, err
		}
		sl := &s.slots[i]
		if i == s.head {
			// Its turn: what it held first, then p, straight out. No other
			// goroutine writes to out while a running slot is the head.
			b := sl.buf
			sl.buf = nil
			s.buffered -= len(b)
			sl.wrote += int64(len(p))
			s.mu.Unlock()
			if len(b) > 0 {
				if err := s.emit(b); err != nil {
					return 0, err
				}
				s.recycle(b)
			}
			if err := s.emit(p); err != nil {
				return 0, err
			}
			return len(p), nil
		}
		if len(sl.buf)+len(p) <= s.limit {
			if cap(sl.buf)-len(sl.buf) < len(p) {
				sl.buf = s.grow(sl.buf, len(p))
			}
			sl.buf = append(sl.buf, p...)
			s.buffered += len(p)
			s.peak = max(s.peak, s.buffered)
			sl.wrote += int64(len(p))
			s.mu.Unlock()
			return len(p), nil
		}
		s.cond.Wait() // full: wait for its turn
	}
}

// grow makes room for n more bytes, never past limit; s.mu is held.
func (s *sequencer) grow(b []byte, n int) []byte {
	want := len(b) + n
	if len(b) == 0 {
		for len(s.spare) > 0 {
			nb := s.spare[len(s.spare)-1]
			s.spare = s.spare[:len(s.spare)-1]
			if cap(nb) >= want {
				return nb
			}
		}
	}
	c := min(max(2*cap(b), want, 4096), s.limit)
	nb := make([]byte, len(b), c)
	copy(nb, b)
	return nb
}

func (s *sequencer) recycle(b []byte) {
	s.mu.Lock()
	if len(s.spare) < cap(s.free) {
		s.spare = append(s.spare, b[:0])
	}
	s.mu.Unlock()
}

// emit writes b to out; an error stops every writer.
func (s *sequencer) emit(b []byte) error {
	n, err := s.out.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		s.mu.Lock()
		if s.werr == nil {
			s.werr = err
		}
		s.cond.Broadcast()
		s.mu.Unlock()
	}
	return err
}

// finish records a slot's result; if it was the head, it writes out it and
// every finished slot after it, calling done for each, and hands the turn to
// the next running one.
func (s *sequencer) finish(i int, dst *Result, r Result) {
	s.mu.Lock()
	r.Wrote = s.slots[i].wrote
	*dst = r
	s.slots[i].finished = true
	if s.advancing || i != s.head {
		// The head is still running (it will come for this one), or someone is
		// already writing out finished slots (and will see this one).
		s.mu.Unlock()
		return
	}
	s.advancing = true
	for s.head < len(s.slots) && s.slots[s.head].finished {
		h := s.head
		b := s.slots[h].buf
		s.slots[h].buf = nil
		s.buffered -= len(b)
		werr := s.werr
		s.mu.Unlock()
		if len(b) > 0 && werr == nil && s.emit(b) == nil {
			s.recycle(b)
		}
		s.done(h)
		s.free <- struct{}{} // never blocks: one token per started slot
		s.mu.Lock()
		s.head++
		s.cond.Broadcast()
	}
	s.advancing = false
	s.mu.Unlock()
}
