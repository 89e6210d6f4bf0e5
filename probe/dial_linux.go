package probe

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// apply sets the options on a raw socket.
func (o SocketOptions) apply(fd int) error {
	set := func(level, opt, v int, name string) error {
		if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
			return fmt.Errorf("setsockopt %s=%d: %w", name, v, err)
		}
		return nil
	}
	if o.Keepalive == nil {
		if err := set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0, "SO_KEEPALIVE"); err != nil {
			return err
		}
	} else {
		k := *o.Keepalive
		if err := k.Validate(); err != nil {
			return err
		}
		for _, v := range []struct {
			level, opt, v int
			name          string
		}{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(k.Time / time.Second), "TCP_KEEPIDLE"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(k.Intvl / time.Second), "TCP_KEEPINTVL"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, k.Probes, "TCP_KEEPCNT"},
		} {
			if err := set(v.level, v.opt, v.v, v.name); err != nil {
				return err
			}
		}
	}
	if o.UserTimeout > 0 {
		ms := o.UserTimeout.Milliseconds()
		if ms < 1 || ms > 1<<31-1 {
			return fmt.Errorf("TCP_USER_TIMEOUT %v: want 1ms to about 24 days", o.UserTimeout)
		}
		return set(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(ms), "TCP_USER_TIMEOUT")
	}
	return nil
}
