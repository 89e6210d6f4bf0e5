//go:build !linux

package diag

import (
	"context"
	"errors"
	"iter"
)

// ErrLinuxOnly is what Dial returns where there is no sock_diag: everywhere
// but Linux. The rest of the package (Socket, states, filters, the decoder)
// builds and works anywhere.
var ErrLinuxOnly = errors.New("diag: sock_diag is Linux only")

// Errors a caller can test with errors.Is; see the Linux build for their meaning.
var (
	ErrNotFound           = errors.New("no such socket (already closed, or its 4-tuple now belongs to another socket)")
	ErrDestroyUnsupported = errors.New("kernel cannot destroy sockets (CONFIG_INET_DIAG_DESTROY is off)")
	ErrUnsupported        = errors.New("the kernel has no sock_diag for TCP (inet_diag, tcp_diag)")
	ErrDumpInterrupted    = errors.New("socket dump interrupted by concurrent changes twice (NLM_F_DUMP_INTR)")
)

// Conn is a sock_diag connection; on this system Dial never returns one.
type Conn struct{}

// Dial returns ErrLinuxOnly.
func Dial(ns Namespace) (*Conn, error) { return nil, ErrLinuxOnly }

// Close does nothing.
func (c *Conn) Close() error { return nil }

// Sockets yields ErrLinuxOnly.
func (c *Conn) Sockets(ctx context.Context, f *Filter) iter.Seq2[*Socket, error] {
	return func(yield func(*Socket, error) bool) { yield(nil, ErrLinuxOnly) }
}

// Destroy returns ErrLinuxOnly.
func (c *Conn) Destroy(s *Socket) error { return ErrLinuxOnly }
