//go:build linux

package sysctl

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// namedFallbacks counts the writes that used a named temporary file because the
// file system has no O_TMPFILE; the tests read it to know which path ran.
var namedFallbacks atomic.Int64

// errNoTmpfile: the directory's file system (or the kernel) cannot create a file
// without a name.
var errNoTmpfile = errors.New("no O_TMPFILE here")

// writeAtomic puts data at path with mode perm so that path always holds its old
// content or the whole new one, and leaves no file behind that a later run would
// not remove (see Persist). named skips O_TMPFILE, as on a file system without it.
func writeAtomic(path string, data []byte, perm os.FileMode, named bool) error {
	dirName, base, err := splitPath(path)
	if err != nil {
		return err
	}
	dirfd, err := unix.Open(dirName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open directory", Path: dirName, Err: err}
	}
	defer unix.Close(dirfd)
	removeStale(dirfd, base)
	if !named {
		err := writeUnnamed(dirfd, dirName, base, data, perm)
		if !errors.Is(err, errNoTmpfile) {
			return err
		}
		namedFallbacks.Add(1)
	}
	return writeNamed(dirfd, dirName, base, data, perm)
}

// writeUnnamed writes data into a file that has no name until it is whole and
// synced: a kill before that leaves nothing (the kernel frees the inode). The lock
// is taken before the file has any name, so no run ever sees its temporary name
// unlocked while this one lives.
func writeUnnamed(dirfd int, dirName, base string, data []byte, perm os.FileMode) error {
	fd, err := unix.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		// EISDIR: a kernel before 3.11; EOPNOTSUPP: a file system without it.
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			return errNoTmpfile
		}
		return &os.PathError{Op: "create a file in", Path: dirName, Err: err}
	}
	f := os.NewFile(uintptr(fd), dirName+"/(unnamed)")
	defer f.Close()
	if err := flock(fd, unix.LOCK_EX); err != nil {
		return &os.PathError{Op: "lock a new file in", Path: dirName, Err: err}
	}
	if err := fill(f, data, perm); err != nil {
		return err
	}
	// Where path does not exist yet, the whole file takes its name at once.
	err = linkFD(fd, dirfd, base)
	if err == nil {
		syncDir(dirfd)
		return nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "link", Path: base, Err: err}
	}
	// linkat cannot replace a name: link under a temporary one, rename over it.
	tmp := tempName(base)
	if err := linkFD(fd, dirfd, tmp); err != nil {
		return &os.PathError{Op: "link", Path: tmp, Err: err}
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, base); err != nil {
		_ = unix.Unlinkat(dirfd, tmp, 0)
		return &os.LinkError{Op: "rename", Old: tmp, New: base, Err: err}
	}
	syncDir(dirfd)
	return nil
}

// writeNamed is the fallback where O_TMPFILE is missing: the file has its
// temporary name from the start, and is locked at once.
func writeNamed(dirfd int, dirName, base string, data []byte, perm os.FileMode) error {
	var (
		fd  int
		tmp string
		err error
	)
	for try := 1; ; try++ {
		tmp = tempName(base)
		fd, err = unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm))
		if err != nil {
			return &os.PathError{Op: "create", Path: dirName + "/" + tmp, Err: err}
		}
		if err = flock(fd, unix.LOCK_EX); err != nil {
			unix.Close(fd)
			_ = unix.Unlinkat(dirfd, tmp, 0)
			return &os.PathError{Op: "lock", Path: dirName + "/" + tmp, Err: err}
		}
		// Between the create and the lock, another run's cleanup may have found
		// the file unlocked and removed it: then start again under a new name.
		if sameFile(fd, dirfd, tmp) {
			break
		}
		unix.Close(fd)
		if try == 3 {
			return fmt.Errorf("create %s/%s: removed as soon as created, %d times", dirName, tmp, try)
		}
	}
	f := os.NewFile(uintptr(fd), dirName+"/"+tmp)
	defer f.Close()
	if err := fill(f, data, perm); err != nil {
		_ = unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, base); err != nil {
		_ = unix.Unlinkat(dirfd, tmp, 0)
		return &os.LinkError{Op: "rename", Old: tmp, New: base, Err: err}
	}
	syncDir(dirfd)
	return nil
}

// fill writes data, sets the mode (the one given at creation went through the
// umask) and syncs, so that the file is whole on disk before it has its name.
func fill(f *os.File, data []byte, perm os.FileMode) error {
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	return f.Sync()
}

// linkFD gives the open file fd the name name in dirfd. The /proc/self/fd form
// needs no privilege; AT_EMPTY_PATH (which needs CAP_DAC_READ_SEARCH) serves
// where /proc is not mounted.
func linkFD(fd, dirfd int, name string) error {
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dirfd, name, unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, unix.ENOENT) {
		err = unix.Linkat(fd, "", dirfd, name, unix.AT_EMPTY_PATH)
	}
	return err
}

// syncDir makes a new name in the directory durable. Its error is not returned:
// the name is already in place, and a caller told "failed" would undo the live
// values that the file now holds.
func syncDir(dirfd int) {
	_ = unix.Fsync(dirfd)
}

// removeStale removes base's temporary files whose writer is gone. A writer holds
// an exclusive flock on its file from before the file has a temporary name until
// the name is renamed away, and the kernel drops the lock when the writer dies,
// however it dies: a lock this run can take belongs to no live writer.
func removeStale(dirfd int, base string) {
	rd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	d := os.NewFile(uintptr(rd), ".")
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, name := range names {
		if isTempName(name, base) {
			removeIfStale(dirfd, name)
		}
	}
}

func removeIfStale(dirfd int, name string) {
	// O_NOFOLLOW: a symlink under a temporary name is not ours; O_NONBLOCK: nor
	// is a FIFO, and opening one must not hang.
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil {
		return // a live writer's
	}
	if sameFile(fd, dirfd, name) {
		_ = unix.Unlinkat(dirfd, name, 0)
	}
}

// sameFile reports whether name in dirfd is still the file open as fd.
func sameFile(fd, dirfd int, name string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Fstatat(dirfd, name, &b, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// flock is flock(2), resumed when a signal interrupts the wait.
func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
