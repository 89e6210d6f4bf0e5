package diag

// Namespace is a network namespace to work in: Do runs fn on an OS thread that
// has entered it. It is the same value sysctl and probe take (internal/netns.NS
// is one). A nil Namespace is the calling thread's.
type Namespace interface {
	Do(fn func() error) error
}

// Counts counts sockets by state as a dump hands them out.
type Counts struct {
	// Sockets is how many sockets were counted.
	Sockets int
	// ByState counts them by state; request sockets count as SYN_RECV, the
	// name they are reported by.
	ByState [16]int
}

// Add counts one socket.
func (c *Counts) Add(s *Socket) {
	c.Sockets++
	st := s.State
	if st == StateNewSynRecv {
		st = StateSynRecv
	}
	c.ByState[int(st)%len(c.ByState)]++
}
