package sysctl

import "fmt"

// Change is a new setting of a namespace's keepalive tunables and, with
// PersistFile, the sysctl.d file that sets them again at boot.
type Change struct {
	Keepalive
	// PersistFile, when not empty, is the sysctl.d file to write (see Persist).
	PersistFile string
	// Header is the file's comment: who wrote it and why (see PersistFile).
	Header string
}

// Apply makes c in ns, all or nothing: it writes the live values (see Write),
// then the file; if the file cannot be written, the live values are restored.
// It returns the values it replaced.
func Apply(ns Namespace, c Change) (old Keepalive, err error) {
	return apply(c, func(k Keepalive) (Keepalive, error) { return Write(ns, k) }, func(k Keepalive) error { return Restore(ns, k) })
}

// Apply is Apply on the tree under p, on the calling thread.
func (p ProcSys) Apply(c Change) (old Keepalive, err error) {
	return apply(c, p.Write, p.Restore)
}

func apply(c Change, write func(Keepalive) (Keepalive, error), restore func(Keepalive) error) (Keepalive, error) {
	old, err := write(c.Keepalive)
	if err != nil || c.PersistFile == "" {
		return old, err
	}
	if perr := Persist(c.PersistFile, c.Keepalive, c.Header); perr != nil {
		if rerr := restore(old); rerr != nil {
			return old, fmt.Errorf("%w; restoring the live values failed too, they are now the new ones: %v", perr, rerr)
		}
		return old, fmt.Errorf("%w; the live values were restored, nothing changed", perr)
	}
	return old, nil
}
