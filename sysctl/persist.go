package sysctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultPersistFile is where Persist writes unless told otherwise: late in
// sysctl.d's order, so it wins over distribution defaults.
const DefaultPersistFile = "/etc/sysctl.d/90-tcpkeep.conf"

// PersistFile renders the sysctl.d file for k. header is one or more comment
// lines (without "#") saying who wrote it and why.
func PersistFile(k Keepalive, header string) []byte {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(header), "\n") {
		b.WriteString("# " + strings.TrimSpace(l) + "\n")
	}
	fmt.Fprintf(&b, "net.ipv4.tcp_keepalive_time = %d\n", k.Time/time.Second)
	fmt.Fprintf(&b, "net.ipv4.tcp_keepalive_intvl = %d\n", k.Intvl/time.Second)
	fmt.Fprintf(&b, "net.ipv4.tcp_keepalive_probes = %d\n", k.Probes)
	return []byte(b.String())
}

// Persist writes k to a sysctl.d file at path, atomically: a temporary file in the
// same directory, synced, then renamed over path, then the directory synced. It
// touches no other file; on failure path is as it was.
//
// sysctl.d applies at boot to the host's namespace only.
func Persist(path string, k Keepalive, header string) error {
	if err := k.Validate(); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("persist to %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(PersistFile(k, header)); err != nil {
		return fmt.Errorf("persist to %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("persist to %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("persist to %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("persist to %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("persist to %s: %w", path, err)
	}
	ok = true
	// The rename is durable once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
