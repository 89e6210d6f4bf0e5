package cli

import (
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// In the namespace it runs in, tcpkeep enters none: a container or systemd unit
// with CAP_NET_ADMIN but without CAP_SYS_ADMIN (which setns needs) can still read
// its own tunables and sockets, and close one. The socket here is this test's
// own, on loopback.
func TestRunsWithoutSysAdminInItsOwnNamespace(t *testing.T) {
	testnet.RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) drops the capability: install util-linux")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	local := s.LocalAddr().String()
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"sysctl"}, "net.ipv4.tcp_keepalive_time"},
		{[]string{"conns", "-o", "ndjson", "--sport", port}, `"local":"` + local + `"`},
		{[]string{"audit", "-o", "json", "--sport", port}, `"type":"audit"`},
		{[]string{"kill", "--sport", port, "-o", "ndjson"}, `"result":"closed"`},
	} {
		out, err := exec.Command("setpriv", append([]string{"--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--", tcpkeepBin}, tc.args...)...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) && tc.args[0] == "audit" && ee.ExitCode() <= 2 {
			err = nil // findings, not a failure to audit
		}
		if err != nil || !strings.Contains(string(out), tc.says) {
			t.Errorf("tcpkeep %v without CAP_SYS_ADMIN: %v, want output with %s:\n%s", tc.args, err, tc.says, out)
		}
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("the socket kill closed reads %v, want ECONNABORTED", err)
	}
}
