package sysctl_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

func TestPersistWritesTheFileAtomically(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "10-other.conf")
	if err := os.WriteFile(other, []byte("vm.swappiness = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "90-tcpkeep.conf")
	k := sysctl.Keepalive{Time: 300 * time.Second, Intvl: 30 * time.Second, Probes: 5}
	if err := sysctl.Persist(path, k, "Written by a test.\nBecause."); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "# Written by a test.\n# Because.\n" +
		"net.ipv4.tcp_keepalive_time = 300\n" +
		"net.ipv4.tcp_keepalive_intvl = 30\n" +
		"net.ipv4.tcp_keepalive_probes = 5\n"
	if string(got) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", got, want)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644: sysctl.d files are world-readable", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want the two files and no temporary ones", len(entries))
	}
	if b, _ := os.ReadFile(other); string(b) != "vm.swappiness = 1\n" {
		t.Fatal("another file in the directory was touched")
	}
}

func TestPersistFailureLeavesTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "90-tcpkeep.conf")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Invalid values are refused before anything is written.
	if err := sysctl.Persist(path, sysctl.Keepalive{Time: 0, Intvl: time.Second, Probes: 1}, "x"); err == nil {
		t.Fatal("Persist accepted a zero time")
	}
	// A target that is a directory: the rename fails, the temporary file goes.
	target := filepath.Join(dir, "adir")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sysctl.Persist(target, sysctl.Defaults, "x"); err == nil {
		t.Fatal("Persist over a non-empty directory succeeded")
	}
	if b, _ := os.ReadFile(path); string(b) != "old\n" {
		t.Fatalf("old file now %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want no temporary file left", len(entries))
	}
}
