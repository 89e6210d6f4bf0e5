//go:build !linux

package sysctl

import (
	"os"
	"path/filepath"
)

// writeAtomic, off Linux (sysctl.d is Linux's): a temporary file renamed over
// path. Without O_TMPFILE and the lock that tells a dead writer's file, a
// killed run may leave its temporary file behind.
func writeAtomic(path string, data []byte, perm os.FileMode, _ bool) error {
	dir, base, err := splitPath(path)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, tempName(base))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
