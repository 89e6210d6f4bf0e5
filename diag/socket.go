package diag

import (
	"net/netip"
	"time"
)

// Family is an address family: AF_INET or AF_INET6.
type Family uint8

// The families a dump covers.
const (
	FamilyInet  Family = 2  // AF_INET
	FamilyInet6 Family = 10 // AF_INET6
)

// String is the name records use: "inet" or "inet6".
// familyAny is no family (AF_UNSPEC): a dump of both at once.
const familyAny Family = 0

func (f Family) String() string {
	switch f {
	case FamilyInet:
		return "inet"
	case FamilyInet6:
		return "inet6"
	case familyAny:
		return "inet and inet6"
	}
	return "unknown"
}

// State is a TCP state as the kernel numbers it (include/net/tcp_states.h).
type State uint8

// TCP states.
const (
	StateEstablished State = 1 + iota
	StateSynSent
	StateSynRecv
	StateFinWait1
	StateFinWait2
	StateTimeWait
	StateClose
	StateCloseWait
	StateLastAck
	StateListen
	StateClosing
	StateNewSynRecv // a request socket; reported as SYN_RECV
)

// Timer is the kind of timer pending on a socket, as inet_diag reports it in
// idiag_timer, plus TimerFinWait2, which the kernel reports as keepalive.
type Timer uint8

// Timers.
const (
	TimerOff        Timer = 0
	TimerRetransmit Timer = 1
	TimerKeepalive  Timer = 2
	TimerTimeWait   Timer = 3
	TimerPersist    Timer = 4 // zero-window probe
	TimerDelack     Timer = 5
	// TimerFinWait2 is timer code 2 on a FIN_WAIT2 socket: sk_timer runs the
	// FIN_WAIT2 timeout there, not keepalive.
	TimerFinWait2 Timer = 0x80
)

// Socket is one TCP socket of a dump. Fields the kernel did not send keep their
// zero values; Info.Len says how much tcp_info there was.
type Socket struct {
	Family Family
	State  State
	Local  netip.AddrPort
	Remote netip.AddrPort
	// Interface is the bound interface index (idiag_if), part of the identity
	// Destroy needs.
	Interface uint32
	// Cookie is the kernel's unique identity of the socket (SO_COOKIE).
	Cookie uint64
	Timer  Timer
	// TimerExpires is how long until the timer fires.
	TimerExpires time.Duration
	// TimerRetrans is the retransmit count for TimerRetransmit, and the number of
	// unanswered probes for TimerKeepalive and TimerPersist.
	TimerRetrans uint8
	// RecvQ and SendQ are the queues as ss shows them: for LISTEN, the accept
	// queue's length and its backlog.
	RecvQ, SendQ uint32
	UID          uint32
	Inode        uint32
	Info         TCPInfo
}

// TCPInfo is the part of struct tcp_info tcpkeep uses. Len is how many bytes the
// kernel sent (0: none, as for TIME_WAIT and request sockets); a field beyond Len
// is zero, not garbage.
type TCPInfo struct {
	Len         int
	State       uint8
	CAState     uint8
	Retransmits uint8 // tcpi_retransmits: consecutive RTO retransmissions
	Probes      uint8 // tcpi_probes: unanswered keepalive or zero-window probes
	Backoff     uint8
	Options     uint8
	SndWscale   uint8
	RcvWscale   uint8
	RTO         time.Duration
	ATO         time.Duration
	SndMSS      uint32
	RcvMSS      uint32
	Unacked     uint32
	Sacked      uint32
	Lost        uint32
	Retrans     uint32
	// Times since the last data or ACK, as the kernel counts them.
	LastDataSent time.Duration
	LastAckSent  time.Duration
	LastDataRecv time.Duration
	LastAckRecv  time.Duration
	PMTU         uint32
	RTT          time.Duration
	RTTVar       time.Duration
	SndCwnd      uint32
	TotalRetrans uint32
	BytesAcked   uint64
	BytesRecv    uint64
	SndWnd       uint32
	RcvWnd       uint32
}
