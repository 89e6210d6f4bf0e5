//go:build !linux

package diag

import (
	"context"
	"errors"
	"iter"
	"time"
)

// ErrOverrun means the kernel dropped destroyed sockets because the
// subscription's receive buffer was full; see the Linux build.
var ErrOverrun = errors.New("destroyed sockets lost: the subscription's receive buffer overflowed (ENOBUFS)")

// Subscription is a subscription to destroyed sockets; on this system
// SubscribeDestroyed never returns one.
type Subscription struct{}

// SubscribeDestroyed returns ErrLinuxOnly.
func SubscribeDestroyed(ns Namespace) (*Subscription, error) { return nil, ErrLinuxOnly }

// SetReadBuffer returns ErrLinuxOnly.
func (s *Subscription) SetReadBuffer(bytes int) error { return ErrLinuxOnly }

// Lost returns ErrLinuxOnly.
func (s *Subscription) Lost() (uint64, error) { return 0, ErrLinuxOnly }

// SetBatch does nothing.
func (s *Subscription) SetBatch(d time.Duration) {}

// Close does nothing.
func (s *Subscription) Close() error { return nil }

// Sockets yields ErrLinuxOnly.
func (s *Subscription) Sockets(ctx context.Context) iter.Seq2[*Socket, error] {
	return func(yield func(*Socket, error) bool) { yield(nil, ErrLinuxOnly) }
}
