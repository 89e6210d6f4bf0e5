package cli

import (
	"errors"
	"os/exec"
	"testing"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// In the namespace it runs in, tcpkeep enters none: a container or systemd unit
// with CAP_NET_ADMIN but without CAP_SYS_ADMIN (which setns needs) can still read
// its own tunables and sockets.
func TestRunsWithoutSysAdminInItsOwnNamespace(t *testing.T) {
	testnet.RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) drops the capability: install util-linux")
	}
	bin := buildTcpkeep(t, t.TempDir())
	for _, args := range [][]string{{"sysctl"}, {"conns", "-o", "ndjson"}, {"audit", "-o", "json"}, {"kill", "--sport", "1", "--dry-run"}} {
		cmd := exec.Command("setpriv", append([]string{"--bounding-set", "-sys_admin", bin}, args...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) && args[0] == "audit" && ee.ExitCode() <= 2 {
			err = nil // findings, not a failure to audit
		}
		if err != nil {
			t.Errorf("tcpkeep %v without CAP_SYS_ADMIN: %v\n%s", args, err, out)
		}
	}
}
