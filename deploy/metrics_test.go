package deploy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tcpkeep/tcpkeep/internal/report"
)

// TestMetricDefinitions: the metrics the rules and the dashboard may use are
// exactly internal/report's definitions, what the binary writes (audit -o
// prom) and serves (watch's /metrics) has those names, types and labels, and
// docs/deployment-agent.md's table lists them all.
func TestMetricDefinitions(t *testing.T) {
	defs := map[string]bool{}
	for _, f := range report.Families() {
		defs[f.Name] = true
		m, ok := metrics[f.Name]
		if !ok {
			t.Errorf("internal/report defines %s, which the list here lacks", f.Name)
			continue
		}
		if m.typ != f.Type || !sameSet(m.labels, f.Labels) {
			t.Errorf("%s: defined as %s %v, listed as %s %v", f.Name, f.Type, f.Labels, m.typ, m.labels)
		}
	}
	for name := range metrics {
		if !defs[name] {
			t.Errorf("%s is listed here but internal/report does not define it", name)
		}
	}

	// What the binary writes: audit -o prom in the namespace the test runs
	// in (a dump there needs no privilege).
	out, err := exec.Command(bin, "audit", "-o", "prom").Output()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() > 2) {
		t.Fatalf("tcpkeep audit -o prom: %v", err)
	}
	checkExposed(t, "audit -o prom", out)

	// What the agent serves.
	cmd := exec.Command(bin, "watch", "--interval", "100ms", "--listen", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // by PID: the process this test started
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`"addr":"([^"]+)"`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var served []byte
	select {
	case a := <-addr:
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && !bytes.Contains(served, []byte("tcpkeep_audit_success")) {
			resp, err := http.Get("http://" + a + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			served, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			time.Sleep(20 * time.Millisecond)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tcpkeep watch did not say where it serves")
	}
	checkExposed(t, "watch's /metrics", served)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("tcpkeep watch after SIGTERM: %v, want exit 0", err)
	}

	// The documentation's table.
	doc, err := os.ReadFile("../docs/deployment-agent.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(tcpkeep_[a-z0-9_]+)` \\| (gauge|counter)[^|]*\\|([^|]*)\\|")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
		var labels []string
		for _, l := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(m[3], -1) {
			labels = append(labels, l[1])
		}
		if d, ok := metrics[m[1]]; !ok || d.typ != m[2] || !sameSet(d.labels, labels) {
			t.Errorf("docs/deployment-agent.md: %s %s %v; tcpkeep defines %+v", m[1], m[2], labels, d)
		}
	}
	for name := range metrics {
		if !documented[name] {
			t.Errorf("docs/deployment-agent.md's table lacks %s", name)
		}
	}
}

// checkExposed parses text-format metrics and holds every tcpkeep_ family to
// the list: its type, and the labels of every sample.
func checkExposed(t *testing.T, where string, text []byte) {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("%s: %v\n%s", where, err, text)
	}
	n := 0
	for name, f := range fams {
		if !strings.HasPrefix(name, "tcpkeep_") {
			continue
		}
		n++
		m, ok := metrics[name]
		typ := map[dto.MetricType]string{dto.MetricType_GAUGE: "gauge", dto.MetricType_COUNTER: "counter"}[f.GetType()]
		if !ok || typ != m.typ {
			t.Errorf("%s exposes %s, a %s, which is not listed as such", where, name, typ)
			continue
		}
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName())
			}
			if !sameSet(labels, m.labels) {
				t.Errorf("%s: %s has labels %v, want %v", where, name, labels, m.labels)
			}
		}
	}
	if n < 10 {
		t.Errorf("%s: %d tcpkeep families, want the gauges at least:\n%s", where, n, text)
	}
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
