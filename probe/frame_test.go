package probe

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/ from a real exchange over loopback")

// recorder keeps the bytes a connection wrote and read.
type recorder struct {
	net.Conn
	mu      sync.Mutex
	out, in bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.Conn.Write(b)
	r.mu.Lock()
	r.out.Write(b[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.in.Write(b[:n])
	r.mu.Unlock()
	return n, err
}

// TestFixtureCapture records, with -update, one ping and its pong from a real
// Server, and the busy frame a full Server (MaxClients 1) answers a second client.
func TestFixtureCapture(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/ping.bin, pong.bin and busy.bin")
	}
	l, err := Listen(nil, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&Server{MaxClients: 1}).Serve(ctx, l)
	c, err := Dial(ctx, nil, l.Addr().String(), SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec := &recorder{Conn: c}
	if _, err := NewPinger(rec).Ping(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	refused, err := Dial(ctx, nil, l.Addr().String(), SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	busy := &recorder{Conn: refused}
	if _, err := NewPinger(busy).Ping(ctx, time.Second); !errors.Is(err, ErrBusy) {
		t.Fatalf("the second client of a server of one: %v, want ErrBusy", err)
	}
	for name, b := range map[string][]byte{"ping.bin": rec.out.Bytes(), "pong.bin": rec.in.Bytes(), "busy.bin": busy.in.Bytes()} {
		if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDecodeFixtures(t *testing.T) {
	ping, err := os.ReadFile("testdata/ping.bin")
	if err != nil {
		t.Fatal(err)
	}
	pong, err := os.ReadFile("testdata/pong.bin")
	if err != nil {
		t.Fatal(err)
	}
	fp, err := Decode(ping)
	if err != nil {
		t.Fatalf("ping fixture: %v", err)
	}
	fq, err := Decode(pong)
	if err != nil {
		t.Fatalf("pong fixture: %v", err)
	}
	if fp.Type != TypePing || fq.Type != TypePong || fp.Seq != 1 || fq.Seq != 1 || fq.Stamp != fp.Stamp {
		t.Fatalf("ping %+v, pong %+v: want seq 1 both, the pong echoing the ping's stamp", fp, fq)
	}
	if ts := time.Unix(0, fp.Stamp); ts.Year() < 2020 {
		t.Fatalf("stamp %v is not a wall-clock time", ts)
	}
	if !bytes.Equal(fp.Append(nil), ping) || !bytes.Equal(fq.Append(nil), pong) {
		t.Fatal("encoding the decoded fixtures does not give their bytes back")
	}
	// The answer is the request with only the type byte changed.
	diff := 0
	for i := range ping {
		if ping[i] != pong[i] {
			diff++
		}
	}
	if len(pong) != len(ping) || diff != 1 || pong[offType] != byte(TypePong) {
		t.Fatalf("pong differs from ping in %d bytes, want only the type byte", diff)
	}
}

// TestDecodeBusyFixture: a full server's refusal, as one went over the wire.
func TestDecodeBusyFixture(t *testing.T) {
	b, err := os.ReadFile("testdata/busy.bin")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Decode(b)
	if err != nil || f != (Frame{Type: TypeBusy}) {
		t.Fatalf("busy fixture %x: %+v, %v; want a busy frame with zero sequence and timestamp", b, f, err)
	}
	if !bytes.Equal(f.Append(nil), b) || f.Type.String() != "busy" {
		t.Fatal("encoding the decoded busy fixture does not give its bytes back")
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Frame{Type: TypePing, Seq: 7, Stamp: 42}.Append(nil)
	mod := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", good[:FrameSize-1]},
		{"long", append(bytes.Clone(good), 0)},
		{"magic", mod(0, 'X')},
		{"version 0", mod(offVersion, 0)},
		{"version 2", mod(offVersion, 2)},
		{"type 0", mod(offType, 0)},
		{"type 4", mod(offType, 4)},
		{"reserved", mod(offReserved+1, 1)},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f, err := Decode(tc.b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %+v, %v; want ErrMalformed", f, err)
			}
		})
	}
	if f, err := Decode(good); err != nil || f != (Frame{Type: TypePing, Seq: 7, Stamp: 42}) {
		t.Fatalf("Decode(good) = %+v, %v", f, err)
	}
}

// FuzzDecode: no panic; either ErrMalformed, or a frame that encodes to the input.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"ping.bin", "pong.bin", "busy.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("TKHB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if got := fr.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("decoded %+v re-encodes to %x, input %x", fr, got, b)
		}
	})
}
