package sysctl

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
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

// Persist writes k to a sysctl.d file at path, atomically: whatever stops it, a
// failure or a kill -9 at any point, path holds either its old content or the new,
// whole, and no file Persist made is left behind for long.
//
// The new content goes into a file created without a name (O_TMPFILE) in path's
// directory, locked, synced, then linked in under a temporary name and renamed
// over path, and the directory synced. On a file system without O_TMPFILE the
// file is created under the temporary name and locked at once. Temporary names
// are "." + the file's name + ".tcpkeep-tmp-" and 16 hex digits: never a *.conf
// that sysctl.d would read. Each run first removes the temporary files of path
// whose lock nobody holds: those of a run that was killed. It touches no other
// file.
//
// sysctl.d applies at boot to the host's namespace only.
func Persist(path string, k Keepalive, header string) error {
	if err := k.Validate(); err != nil {
		return err
	}
	if err := writeAtomic(path, PersistFile(k, header), 0o644, false); err != nil {
		return fmt.Errorf("persist to %s: %w", path, err)
	}
	return nil
}

// tempMarker sits between the target's name and the random part of a temporary
// file's name.
const tempMarker = ".tcpkeep-tmp-"

// tempName is a fresh temporary name for the file named base.
func tempName(base string) string {
	var r [8]byte
	_, _ = rand.Read(r[:]) // never fails on Linux (getrandom)
	return "." + base + tempMarker + hex.EncodeToString(r[:])
}

// isTempName reports whether name is one of base's temporary names, and nothing
// else: another tool's files are not ours to remove.
func isTempName(name, base string) bool {
	rest, ok := strings.CutPrefix(name, "."+base+tempMarker)
	if !ok || len(rest) != 16 {
		return false
	}
	for _, c := range rest {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// splitPath is path's directory and file name; the name must be a file's.
func splitPath(path string) (dir, base string, err error) {
	dir, base = filepath.Split(filepath.Clean(path))
	if base == "" || base == "." || base == ".." || base == "/" {
		return "", "", fmt.Errorf("%q is not a file name", path)
	}
	if dir == "" {
		dir = "."
	}
	return dir, base, nil
}
