package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// selfList is n copies of the namespace the test runs in: a walk over it needs
// no privilege, so the ordering can be tested anywhere.
func selfList(t testing.TB, n int) []Namespace {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	list := make([]Namespace, n)
	for i := range list {
		list[i] = Namespace{NS: Self(), Name: "self-" + strconv.Itoa(i), Dev: st.Dev, Ino: st.Ino, Self: true}
	}
	return list
}

// chunky writes namespace i's output in several writes of uneven sizes, with
// pauses that let later namespaces run ahead: "i:j:" then filler, one line per
// write.
func chunky(sizes func(i int) []int) func(ctx context.Context, v *Visit) error {
	return func(ctx context.Context, v *Visit) error {
		for j, n := range sizes(v.Index) {
			line := fmt.Sprintf("%d:%d:", v.Index, j)
			line += strings.Repeat("x", max(0, n-len(line)-1)) + "\n"
			if _, err := io.WriteString(v.Out, line); err != nil {
				return err
			}
			if (v.Index+j)%3 == 0 {
				time.Sleep(time.Duration(v.Index%4) * time.Millisecond)
			}
			runtime.Gosched()
		}
		return nil
	}
}

// expected is what chunky's output must be: every namespace's lines, in list
// order, each namespace's together.
func expected(n int, sizes func(i int) []int) string {
	var b strings.Builder
	for i := range n {
		for j, sz := range sizes(i) {
			line := fmt.Sprintf("%d:%d:", i, j)
			b.WriteString(line + strings.Repeat("x", max(0, sz-len(line)-1)) + "\n")
		}
	}
	return b.String()
}

// lockedBuffer is a bytes.Buffer that fails the test if two goroutines write
// to it at once.
type lockedBuffer struct {
	mu   sync.Mutex
	busy bool
	b    bytes.Buffer
	t    *testing.T
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.busy {
		w.t.Error("two writes to the walk's writer at once")
	}
	w.busy = true
	w.mu.Unlock()
	n, err := w.b.Write(p)
	w.mu.Lock()
	w.busy = false
	w.mu.Unlock()
	return n, err
}

func TestWalkWritesInListOrder(t *testing.T) {
	// Later namespaces write more, and some write more than Buffer in one go:
	// they must wait for their turn instead of holding it.
	sizes := func(i int) []int {
		s := make([]int, 1+i%5)
		for j := range s {
			s[j] = 20 + (i*37+j*101)%700
		}
		if i%7 == 3 {
			s = append(s, 3000)
		}
		return s
	}
	for _, tc := range []struct {
		par, buffer int
		enter       bool
	}{{1, 1024, false}, {4, 1024, false}, {8, 256, true}, {16, 100000, false}} {
		t.Run(fmt.Sprintf("par=%d,buffer=%d,enter=%v", tc.par, tc.buffer, tc.enter), func(t *testing.T) {
			const n = 40
			list := selfList(t, n)
			out := &lockedBuffer{t: t}
			var done []int
			w := &Walker{Parallel: tc.par, Buffer: tc.buffer, Enter: tc.enter, Done: func(r Result) {
				done = append(done, r.Index)
				if int64(len(expected(r.Index+1, sizes))-len(expected(r.Index, sizes))) != r.Wrote {
					t.Errorf("namespace %d: Wrote = %d", r.Index, r.Wrote)
				}
				// Done comes after the namespace's output and before the next's.
				if !strings.HasSuffix(out.b.String(), expected(r.Index+1, sizes)[len(expected(r.Index, sizes)):]) {
					t.Errorf("Done(%d) before its output was written", r.Index)
				}
			}}
			res, err := w.Walk(context.Background(), list, out, chunky(sizes))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := out.b.String(), expected(n, sizes); got != want {
				t.Fatalf("output out of order or interleaved:\n%.400s\nwant:\n%.400s", got, want)
			}
			for i, r := range res {
				if r.Err != nil || r.Index != i {
					t.Errorf("result %d: %+v", i, r)
				}
				if len(done) <= i || done[i] != i {
					t.Fatalf("Done called for %v, want every namespace in order", done)
				}
			}
		})
	}
}

// A namespace behind a slow head never holds more than Buffer bytes: the walk's
// memory is bounded by Parallel x Buffer, not by what a namespace writes.
func TestWalkBoundsWhatItHolds(t *testing.T) {
	const par, buffer = 4, 64 << 10
	list := selfList(t, 12)
	release := make(chan struct{})
	var written int64
	var mu sync.Mutex
	fn := func(ctx context.Context, v *Visit) error {
		if v.Index == 0 {
			<-release // the head is slow: everyone else must wait or buffer
		}
		line := bytes.Repeat([]byte("y"), 4096)
		for range 1024 { // 4 MiB each
			if _, err := v.Out.Write(line); err != nil {
				return err
			}
		}
		mu.Lock()
		written += 4 << 20
		mu.Unlock()
		return nil
	}
	var s *sequencer
	w := &Walker{Parallel: par, Buffer: buffer}
	go func() {
		time.Sleep(50 * time.Millisecond) // let the others fill their buffers
		close(release)
	}()
	out := &countWriter{}
	res, err := w.walkWith(context.Background(), list, out, fn, &s)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if out.n != int64(len(list))*4<<20 || written != out.n {
		t.Fatalf("wrote %d bytes, want %d", out.n, int64(len(list))*4<<20)
	}
	// Parallel slots: the new head may still hold what it buffered while the
	// next one fills.
	if s.peak > par*buffer {
		t.Fatalf("held up to %d bytes, want at most %d", s.peak, par*buffer)
	}
	if s.peak == 0 {
		t.Fatal("nothing was ever held: the test did not run namespaces behind a slow head")
	}
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// failWriter fails once it has taken n bytes.
type failWriter struct {
	n   int
	err error
}

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, w.err
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWalkStopsWhenOutputFails(t *testing.T) {
	epipe := errors.New("broken pipe")
	list := selfList(t, 50)
	sizes := func(int) []int { return []int{500, 500} }
	w := &Walker{Parallel: 4, Buffer: 4096}
	res, err := w.Walk(context.Background(), list, &failWriter{n: 5000, err: epipe}, chunky(sizes))
	if !errors.Is(err, epipe) {
		t.Fatalf("Walk = %v, want the writer's error", err)
	}
	if !errors.Is(res[len(res)-1].Err, epipe) {
		t.Fatalf("the last namespace: %v, want it not started for the writer's error", res[len(res)-1].Err)
	}
}

func TestWalkCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	list := selfList(t, 100)
	out := &lockedBuffer{t: t}
	var doneN int
	w := &Walker{Parallel: 3, Buffer: 512, Done: func(Result) { doneN++ }}
	res, err := w.Walk(ctx, list, out, func(ctx context.Context, v *Visit) error {
		if v.Index == 10 {
			cancel()
		}
		return chunky(func(int) []int { return []int{100, 100, 100} })(ctx, v)
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Walk = %v, want context.Canceled", err)
	}
	if !errors.Is(res[99].Err, context.Canceled) {
		t.Fatalf("namespace 99 after cancel: %v", res[99].Err)
	}
	if doneN > 10+3 {
		t.Fatalf("Done called %d times: the walk went on after the cancel", doneN)
	}
	// What was written is whole namespaces' lines, in order.
	last := -1
	for _, line := range strings.Split(strings.TrimSuffix(out.b.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		i, _ := strconv.Atoi(line[:strings.IndexByte(line, ':')])
		if i < last {
			t.Fatalf("namespace %d written after %d", i, last)
		}
		last = i
	}
}

func TestVisitDoAndFd(t *testing.T) {
	list := selfList(t, 2)
	res, err := (&Walker{}).Walk(context.Background(), list, io.Discard, func(ctx context.Context, v *Visit) error {
		var st unix.Stat_t
		if err := unix.Fstat(v.Fd(), &st); err != nil || st.Ino != v.Ino {
			return fmt.Errorf("Fd is not the namespace: %v", err)
		}
		f, err := v.Open()
		if err != nil {
			return err
		}
		defer f.Close()
		if f.Fd() == uintptr(v.Fd()) {
			return errors.New("Open returned the visit's own descriptor")
		}
		ran := false
		if err := v.Do(func() error { ran = true; return nil }); err != nil || !ran {
			return fmt.Errorf("Do: %v, ran %v", err, ran)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
}

// A namespace file that is now another namespace (a reused PID, a name made
// again) is not followed: the visit reports ErrGone.
func TestWalkChecksTheInode(t *testing.T) {
	list := selfList(t, 1)
	list[0].Ino++
	list[0].Self = false
	list[0].NS = NS{Spec: "pid:1", Path: "/proc/self/ns/net"}
	ran := false
	res, err := (&Walker{}).Walk(context.Background(), list, io.Discard, func(context.Context, *Visit) error { ran = true; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if ran || !errors.Is(res[0].Err, ErrGone) {
		t.Fatalf("visited %v, result %v: want ErrGone and no visit", ran, res[0].Err)
	}
}

// A context that ends once every visit is done cut nothing short: no error.
func TestWalkCancelledAfterTheLast(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	list := selfList(t, 5)
	w := &Walker{Done: func(r Result) {
		if r.Index == len(list)-1 {
			cancel()
		}
	}}
	res, err := w.Walk(ctx, list, io.Discard, func(context.Context, *Visit) error { return nil })
	if err != nil || res[len(res)-1].Err != nil {
		t.Fatalf("Walk = %v, last result %v: want no error", err, res[len(res)-1].Err)
	}
}
