//go:build !linux

package probe

import "errors"

// ErrLinuxOnly is what Dial returns where the socket options it sets
// (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT) do not exist:
// everywhere but Linux. The protocol (Frame, Server, Pinger) works anywhere.
var ErrLinuxOnly = errors.New("probe: setting keepalive socket options is Linux only")

func (o SocketOptions) apply(fd int) error { return ErrLinuxOnly }
