package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The wire format of a frame: FrameSize bytes, integers big-endian.
//
//	offset  size  field
//	0       4     magic "TKHB" (0x54 0x4b 0x48 0x42)
//	4       1     version (1)
//	5       1     type: 1 ping, 2 pong, 3 busy
//	6       2     reserved, zero
//	8       8     sequence number, chosen by the client; zero in a busy frame
//	16      8     sender's timestamp: the client's clock in nanoseconds since the
//	              Unix epoch; a pong carries its ping's unchanged; zero in a busy
//	              frame
//
// Busy (added within version 1) is the server's refusal: it sends one, unasked,
// just before it closes a connection it will not serve, a new one when it is full
// or a silent one it closes to make room. A client of an older tcpkeep takes it
// for a malformed frame and stops with an error, which is still not "dead".
// docs/probe-protocol.md describes the whole exchange.
const (
	// FrameSize is the size of every frame, ping or pong.
	FrameSize = 24
	// Version is the protocol version this package speaks.
	Version = 1

	offMagic    = 0
	offVersion  = 4
	offType     = 5
	offReserved = 6
	offSeq      = 8
	offStamp    = 16
)

// Magic opens every frame.
var Magic = [4]byte{'T', 'K', 'H', 'B'}

// Type is what a frame asks or answers.
type Type uint8

// Frame types.
const (
	// TypePing asks the server to answer.
	TypePing Type = 1
	// TypePong is the server's answer: the ping with its type changed.
	TypePong Type = 2
	// TypeBusy is the server's refusal, sent unasked before it closes the
	// connection: it is full. Its sequence and timestamp are zero.
	TypeBusy Type = 3
)

func (t Type) String() string {
	switch t {
	case TypePing:
		return "ping"
	case TypePong:
		return "pong"
	case TypeBusy:
		return "busy"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ErrMalformed reports bytes that are not a frame of this protocol version.
var ErrMalformed = errors.New("malformed heartbeat frame")

// Frame is one heartbeat message.
type Frame struct {
	// Type is TypePing, TypePong or TypeBusy.
	Type Type
	// Seq is the client's sequence number; the pong repeats it.
	Seq uint64
	// Stamp is the sending client's clock in nanoseconds since the Unix epoch
	// (time.Now().UnixNano()); the pong repeats it, so a client may compute the
	// round trip from the answer alone.
	Stamp int64
}

// Encode writes f into b, which must hold FrameSize bytes.
func (f Frame) Encode(b *[FrameSize]byte) {
	copy(b[offMagic:], Magic[:])
	b[offVersion] = Version
	b[offType] = byte(f.Type)
	b[offReserved], b[offReserved+1] = 0, 0
	binary.BigEndian.PutUint64(b[offSeq:], f.Seq)
	binary.BigEndian.PutUint64(b[offStamp:], uint64(f.Stamp))
}

// Append appends the encoded f to b.
func (f Frame) Append(b []byte) []byte {
	var a [FrameSize]byte
	f.Encode(&a)
	return append(b, a[:]...)
}

// Decode reads a frame from exactly FrameSize bytes. Anything else, a wrong magic,
// another version, an unknown type or non-zero reserved bytes, is ErrMalformed.
func Decode(b []byte) (Frame, error) {
	if len(b) != FrameSize {
		return Frame{}, fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(b), FrameSize)
	}
	if [4]byte(b[offMagic:offMagic+4]) != Magic {
		return Frame{}, fmt.Errorf("%w: magic %x, want %x", ErrMalformed, b[offMagic:offMagic+4], Magic[:])
	}
	if b[offVersion] != Version {
		return Frame{}, fmt.Errorf("%w: version %d, this speaks %d", ErrMalformed, b[offVersion], Version)
	}
	t := Type(b[offType])
	if t != TypePing && t != TypePong && t != TypeBusy {
		return Frame{}, fmt.Errorf("%w: unknown type %d", ErrMalformed, b[offType])
	}
	if b[offReserved] != 0 || b[offReserved+1] != 0 {
		return Frame{}, fmt.Errorf("%w: reserved bytes %x, want zero", ErrMalformed, b[offReserved:offReserved+2])
	}
	return Frame{
		Type:  t,
		Seq:   binary.BigEndian.Uint64(b[offSeq:]),
		Stamp: int64(binary.BigEndian.Uint64(b[offStamp:])),
	}, nil
}
