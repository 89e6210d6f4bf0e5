package sysctl

// PersistNamed is Persist by way of a named temporary file, as on a file system
// without O_TMPFILE.
func PersistNamed(path string, k Keepalive, header string) error {
	if err := k.Validate(); err != nil {
		return err
	}
	return writeAtomic(path, PersistFile(k, header), 0o644, true)
}

// NamedFallbacks is how many writes fell back to a named temporary file for want
// of O_TMPFILE.
func NamedFallbacks() int64 { return namedFallbacks.Load() }
