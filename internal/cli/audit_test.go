package cli

import (
	"errors"
	"testing"

	"github.com/tcpkeep/tcpkeep/internal/audit"
)

func TestAuditExit(t *testing.T) {
	for _, tc := range []struct {
		name          string
		worst, failOn audit.Severity
		want          int
	}{
		{"nothing found", 0, audit.Warning, auditOK},
		{"nothing found, fail on info", 0, audit.Info, auditOK},
		{"info below warning", audit.Info, audit.Warning, auditOK},
		{"info at fail-on info", audit.Info, audit.Info, auditWarning},
		{"warning", audit.Warning, audit.Warning, auditWarning},
		{"warning below critical", audit.Warning, audit.Critical, auditOK},
		{"critical", audit.Critical, audit.Warning, auditCritical},
		{"critical at fail-on critical", audit.Critical, audit.Critical, auditCritical},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := auditExit(tc.worst, tc.failOn)
			got := auditOK
			var ee *exitCodeError
			if errors.As(err, &ee) {
				got = ee.code
			} else if err != nil {
				t.Fatalf("error %v", err)
			}
			if got != tc.want {
				t.Fatalf("exit %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPromLabel(t *testing.T) {
	if got := promLabel("a\"b\\c\nd"); got != `a\"b\\c\nd` {
		t.Fatalf("promLabel = %q", got)
	}
}
