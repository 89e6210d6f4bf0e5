package diag

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"time"
)

// struct inet_diag_msg (include/uapi/linux/inet_diag.h), 72 bytes.
const (
	msgLen     = 72
	offFamily  = 0
	offState   = 1
	offTimer   = 2
	offRetrans = 3
	offSport   = 4  // __be16
	offDport   = 6  // __be16
	offSrc     = 8  // __be32[4]
	offDst     = 24 // __be32[4]
	offIf      = 40
	offCookie  = 44 // __u32[2]: low word first
	offExpires = 52 // ms
	offRqueue  = 56
	offWqueue  = 60
	offUID     = 64
	offInode   = 68
)

// Attribute types of an inet_diag_msg (enum INET_DIAG_*).
const (
	attrInfo = 2 // INET_DIAG_INFO: struct tcp_info
)

// struct tcp_info (include/uapi/linux/tcp.h): offsets of the fields decoded.
const (
	tiState        = 0
	tiCAState      = 1
	tiRetransmits  = 2
	tiProbes       = 3
	tiBackoff      = 4
	tiOptions      = 5
	tiWscale       = 6 // snd_wscale:4, rcv_wscale:4
	tiRTO          = 8 // us
	tiATO          = 12
	tiSndMSS       = 16
	tiRcvMSS       = 20
	tiUnacked      = 24
	tiSacked       = 28
	tiLost         = 32
	tiRetrans      = 36
	tiLastDataSent = 44 // ms
	tiLastAckSent  = 48
	tiLastDataRecv = 52
	tiLastAckRecv  = 56
	tiPMTU         = 60
	tiRTT          = 68 // us
	tiRTTVar       = 72
	tiSndCwnd      = 80
	tiTotalRetrans = 100
	tiBytesAcked   = 120
	tiBytesRecv    = 128
	tiSndWnd       = 228
	tiRcvWnd       = 232
)

// littleEndian decides which nibble of tcp_info's bit-field byte is which: C
// allocates the first bit-field (snd_wscale) in the low bits on little-endian
// machines and in the high bits on big-endian ones.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// errMalformed is the root of every decoding error.
var errMalformed = errors.New("malformed sock_diag message")

// decodeError says what was wrong with a message without allocating on the
// good path: it is only built when a message is bad.
type decodeError struct {
	what      string
	got, want int
}

func (e *decodeError) Error() string {
	s := errMalformed.Error() + ": " + e.what
	if e.want > 0 || e.got > 0 {
		s += " (" + strconv.Itoa(e.got) + " bytes, want " + strconv.Itoa(e.want) + ")"
	}
	return s
}

func (e *decodeError) Unwrap() error { return errMalformed }

// decode fills s from the payload of one SOCK_DIAG_BY_FAMILY reply (an
// inet_diag_msg and its attributes). Every field is set, so s may be reused.
func decode(b []byte, s *Socket) error {
	if len(b) < msgLen {
		return &decodeError{what: "inet_diag_msg too short", got: len(b), want: msgLen}
	}
	*s = Socket{}
	if err := decodeMsg(b[:msgLen], s); err != nil {
		return err
	}
	return decodeAttrs(b[msgLen:], s)
}

func decodeMsg(b []byte, s *Socket) error {
	s.Family = Family(b[offFamily])
	switch s.Family {
	case FamilyInet:
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[offSrc:offSrc+4])), binary.BigEndian.Uint16(b[offSport:]))
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[offDst:offDst+4])), binary.BigEndian.Uint16(b[offDport:]))
	case FamilyInet6:
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[offSrc:offSrc+16])), binary.BigEndian.Uint16(b[offSport:]))
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[offDst:offDst+16])), binary.BigEndian.Uint16(b[offDport:]))
	default:
		return &decodeError{what: "address family " + strconv.Itoa(int(s.Family)) + " is neither AF_INET nor AF_INET6"}
	}
	s.State = State(b[offState])
	s.Timer = Timer(b[offTimer])
	// The kernel reports the FIN_WAIT2 timer with the keepalive timer's code (2):
	// both run on sk_timer. Name it for what it is.
	if s.State == StateFinWait2 && s.Timer == TimerKeepalive {
		s.Timer = TimerFinWait2
	}
	s.TimerRetrans = b[offRetrans]
	s.TimerExpires = time.Duration(binary.NativeEndian.Uint32(b[offExpires:])) * time.Millisecond
	s.Interface = binary.NativeEndian.Uint32(b[offIf:])
	s.Cookie = uint64(binary.NativeEndian.Uint32(b[offCookie:])) | uint64(binary.NativeEndian.Uint32(b[offCookie+4:]))<<32
	s.RecvQ = binary.NativeEndian.Uint32(b[offRqueue:])
	s.SendQ = binary.NativeEndian.Uint32(b[offWqueue:])
	s.UID = binary.NativeEndian.Uint32(b[offUID:])
	s.Inode = binary.NativeEndian.Uint32(b[offInode:])
	return nil
}

// decodeAttrs walks the netlink attributes (struct rtattr: u16 length including
// the 4-byte header, u16 type, payload padded to 4 bytes) after the message.
func decodeAttrs(b []byte, s *Socket) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return &decodeError{what: "trailing bytes after the attributes", got: len(b), want: 4}
		}
		n := int(binary.NativeEndian.Uint16(b[0:]))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (1<<15 | 1<<14) // NLA_F_NESTED, NLA_F_NET_BYTEORDER
		if n < 4 || n > len(b) {
			return &decodeError{what: "attribute " + strconv.Itoa(int(typ)) + " length out of bounds", got: n, want: len(b)}
		}
		if typ == attrInfo {
			decodeTCPInfo(b[4:n], &s.Info)
		}
		n = (n + 3) &^ 3
		if n > len(b) {
			// The last attribute may lack its padding.
			n = len(b)
		}
		b = b[n:]
	}
	return nil
}

// decodeTCPInfo reads as much of struct tcp_info as the kernel sent: an older
// kernel sends less, and the fields it did not send stay zero.
func decodeTCPInfo(b []byte, t *TCPInfo) {
	*t = TCPInfo{Len: len(b)}
	u8 := func(off int) uint8 {
		if off < len(b) {
			return b[off]
		}
		return 0
	}
	u32 := func(off int) uint32 {
		if off+4 <= len(b) {
			return binary.NativeEndian.Uint32(b[off:])
		}
		return 0
	}
	u64 := func(off int) uint64 {
		if off+8 <= len(b) {
			return binary.NativeEndian.Uint64(b[off:])
		}
		return 0
	}
	t.State = u8(tiState)
	t.CAState = u8(tiCAState)
	t.Retransmits = u8(tiRetransmits)
	t.Probes = u8(tiProbes)
	t.Backoff = u8(tiBackoff)
	t.Options = u8(tiOptions)
	if tiWscale < len(b) {
		lo, hi := b[tiWscale]&0x0f, b[tiWscale]>>4
		if littleEndian {
			t.SndWscale, t.RcvWscale = lo, hi
		} else {
			t.SndWscale, t.RcvWscale = hi, lo
		}
	}
	t.RTO = time.Duration(u32(tiRTO)) * time.Microsecond
	t.ATO = time.Duration(u32(tiATO)) * time.Microsecond
	t.SndMSS = u32(tiSndMSS)
	t.RcvMSS = u32(tiRcvMSS)
	t.Unacked = u32(tiUnacked)
	t.Sacked = u32(tiSacked)
	t.Lost = u32(tiLost)
	t.Retrans = u32(tiRetrans)
	t.LastDataSent = time.Duration(u32(tiLastDataSent)) * time.Millisecond
	t.LastAckSent = time.Duration(u32(tiLastAckSent)) * time.Millisecond
	t.LastDataRecv = time.Duration(u32(tiLastDataRecv)) * time.Millisecond
	t.LastAckRecv = time.Duration(u32(tiLastAckRecv)) * time.Millisecond
	t.PMTU = u32(tiPMTU)
	t.RTT = time.Duration(u32(tiRTT)) * time.Microsecond
	t.RTTVar = time.Duration(u32(tiRTTVar)) * time.Microsecond
	t.SndCwnd = u32(tiSndCwnd)
	t.TotalRetrans = u32(tiTotalRetrans)
	t.BytesAcked = u64(tiBytesAcked)
	t.BytesRecv = u64(tiBytesRecv)
	t.SndWnd = u32(tiSndWnd)
	t.RcvWnd = u32(tiRcvWnd)
}
