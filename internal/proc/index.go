package proc

import (
	"errors"
	"sync"
)

// Index is where a run learns which process holds a socket and, when asked for,
// that socket's real options. It scans Root on its first lookup, so a run that
// looks nothing up (an audit that flags nothing) never scans, and it reads
// options through an OptReader. It is safe for concurrent use (a run over
// many namespaces shares one: socket inodes are unique on the host), one
// lookup at a time.
type Index struct {
	mu      sync.Mutex
	root    string
	opts    *OptReader // nil: options are not read
	scanned bool
	owners  *Owners
	err     error
}

// NewIndex returns an index over root (normally "/proc"). With options, Options
// reads sockets' options from their owners; without, it reports none.
func NewIndex(root string, options bool) *Index {
	x := &Index{root: root}
	if options {
		x.opts = NewOptReader()
	}
	return x
}

// Owner returns the process holding the socket with this inode. A nil Index
// finds none.
func (x *Index) Owner(inode uint32) (Owner, bool) {
	if x == nil || inode == 0 {
		return Owner{}, false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.owner(inode)
}

// owner is Owner with x.mu held.
func (x *Index) owner(inode uint32) (Owner, bool) {
	if !x.scanned {
		x.scanned = true
		o, err := ScanOwners(x.root)
		if err != nil {
			x.note(err)
		}
		x.owners = o
	}
	return x.owners.Lookup(inode)
}

// ReadsOptions says whether Options reads anything.
func (x *Index) ReadsOptions() bool { return x != nil && x.opts != nil }

// Options reads the real options of the socket with this inode from its owner
// into o. It reports false when the socket has no owner found, the index reads
// no options, or reading failed; Err keeps the first failure that is not the
// socket going away.
func (x *Index) Options(inode uint32, o *SockOpts) bool {
	if !x.ReadsOptions() || inode == 0 {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	w, ok := x.owner(inode)
	if !ok {
		return false
	}
	if err := x.opts.Read(w, inode, o); err != nil {
		if !errors.Is(err, ErrGone) {
			x.note(err)
		}
		return false
	}
	return true
}

func (x *Index) note(err error) {
	if x.err == nil {
		x.err = err
	}
}

// Err is the first reason owners or options could not be read: a failed scan,
// or options the kernel would not give (ErrNotPermitted, ErrUnsupported).
func (x *Index) Err() error {
	if x == nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// Close releases the pidfds the options reader holds.
func (x *Index) Close() error {
	if x == nil || x.opts == nil {
		return nil
	}
	return x.opts.Close()
}
