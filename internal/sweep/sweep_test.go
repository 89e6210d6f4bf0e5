package sweep

// What a run over many namespaces writes, without root: the namespace the
// test runs in stands for each of them (the walk opens and checks it as it
// would another), and each has its own sockets in memory (kernel.Fake). The
// walk over real namespaces is tested in internal/cli's end-to-end tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// selves is n namespaces, each the test's own under another name.
func selves(t *testing.T, n int) []netns.Namespace {
	t.Helper()
	self, err := netns.Describe(netns.Self())
	if err != nil {
		t.Fatal(err)
	}
	list := make([]netns.Namespace, n)
	for i := range list {
		list[i] = self
		list[i].Name = fmt.Sprintf("ns%02d", i)
	}
	return list
}

// fakes are namespaces in memory: the i-th holds i+1 sockets.
func fakes(t *testing.T, n int) []*kernel.Fake {
	t.Helper()
	root := t.TempDir()
	for name, v := range map[string]string{sysctl.FileTime: "7200", sysctl.FileIntvl: "75", sysctl.FileProbes: "9"} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ks := make([]*kernel.Fake, n)
	for i := range ks {
		ks[i] = kernel.NewFake(fmt.Sprintf("ns%02d", i), sysctl.ProcSys(root))
		for j := range i + 1 {
			ks[i].Add(diag.Socket{Family: diag.FamilyInet, State: diag.StateEstablished, Cookie: uint64(100*i + j),
				Local: netip.MustParseAddrPort(fmt.Sprintf("10.0.0.1:%d", 1000+j)), Remote: netip.MustParseAddrPort("10.0.0.2:80")})
		}
	}
	return ks
}

// byName gives each visit its fake, by the namespace's name.
func byName(ks []*kernel.Fake) func(*netns.Visit) kernel.NS {
	return func(v *netns.Visit) kernel.NS {
		for _, k := range ks {
			if k.NSName == v.Name {
				return k
			}
		}
		return nil
	}
}

type allDoc struct {
	Type, Command string
	Namespaces    []map[string]any
	Summary       map[string]any
}

func decodeDoc(t *testing.T, out string) allDoc {
	t.Helper()
	var d allDoc
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&d); err != nil || dec.More() {
		t.Fatalf("not one JSON document (%v):\n%s", err, out)
	}
	return d
}

// TestAllInOrder: namespaces visited three at a time are written in the
// order of the list, each whole with its own sockets, and the total adds them
// up; one that is gone and one whose job fails are records, and the rest are
// read.
func TestAllInOrder(t *testing.T) {
	const n = 8
	list := selves(t, n)
	list[3].NS, list[3].Name = netns.NS{Spec: "ghost", Path: filepath.Join(t.TempDir(), "ghost")}, "ghost" // gone
	ks := fakes(t, n)
	var out bytes.Buffer
	tot := &report.Total{Command: "conns"}
	var visited []int
	cfg := &Config{Format: report.JSON, Meta: report.Meta{Host: "h"}, Parallel: 3, Total: tot, Kernel: byName(ks),
		Explain: func(err error) string { return err.Error() }, Visited: func(r netns.Result) { visited = append(visited, r.Index) }}
	job := &Conns{Format: report.JSON, Total: tot}
	o, err := All(context.Background(), &out, cfg, &netns.Found{Namespaces: list}, func(ctx context.Context, t *Target) error {
		if t.NS.Name == "ns05" {
			return errors.New("the dump failed")
		}
		return job.Run(ctx, t)
	})
	if err != nil {
		t.Fatal(err)
	}
	d := decodeDoc(t, out.String())
	var got []string
	for _, m := range d.Namespaces {
		s := fmt.Sprint(m["type"], " ", m["netns"])
		if m["type"] == "conns" {
			s += fmt.Sprint(" ", len(m["sockets"].([]any)))
		}
		got = append(got, s)
	}
	want := "conns ns00 1, conns ns01 2, conns ns02 3, netns_error ghost, conns ns04 5, netns_error ns05, conns ns06 7, conns ns07 8"
	if strings.Join(got, ", ") != want {
		t.Errorf("namespaces:\n%s\nwant\n%s", strings.Join(got, ", "), want)
	}
	if d.Namespaces[3]["reason"] != "gone" || d.Namespaces[5]["reason"] != "error" || d.Namespaces[5]["error"] != "the dump failed" {
		t.Errorf("records of the failures: %v, %v", d.Namespaces[3], d.Namespaces[5])
	}
	if d.Namespaces[0]["netns_inode"] != float64(list[0].Ino) {
		t.Errorf("a namespace's document without its inode: %v", d.Namespaces[0]["netns_inode"])
	}
	s := d.Summary
	if s["sockets"] != 1.0+2+3+5+7+8 || s["namespaces"] != float64(n) || s["namespaces_visited"] != 6.0 || s["namespaces_gone"] != 1.0 || s["namespaces_failed"] != 1.0 {
		t.Errorf("summary %v", s)
	}
	if len(o.Failures) != 2 || !o.Failures[0].Gone || o.Failures[1].Gone || o.Interrupted {
		t.Errorf("outcome %+v", o)
	}
	if fmt.Sprint(visited) != "[0 1 2 3 4 5 6 7]" {
		t.Errorf("Visited called for %v, want each in order", visited)
	}
}

// TestAllInterrupted: a signal in the middle of one namespace's dump leaves
// one whole document: the namespaces under way say they were interrupted, no
// other is started, and the total says so.
func TestAllInterrupted(t *testing.T) {
	const n = 10
	for _, f := range []report.Format{report.JSON, report.NDJSON, report.Table} {
		t.Run(string(f), func(t *testing.T) {
			ks := fakes(t, n)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ks[4].Pace = func(i int) {
				if i == 2 {
					cancel()
				}
			}
			var out bytes.Buffer
			tot := &report.Total{Command: "conns"}
			cfg := &Config{Format: f, Parallel: 2, Total: tot, Kernel: byName(ks), Explain: func(err error) string { return err.Error() }}
			job := &Conns{Format: f, Total: tot}
			o, err := All(ctx, &out, cfg, &netns.Found{Namespaces: selves(t, n)}, job.Run)
			if err != nil {
				t.Fatal(err)
			}
			if !o.Interrupted || !tot.Interrupted || len(o.Failures) != 0 {
				t.Fatalf("outcome %+v, total interrupted %v", o, tot.Interrupted)
			}
			switch f {
			case report.JSON:
				// The namespaces whose jobs began before the signal: those before
				// ns04 (one may have begun after it, two at once) and ns04.
				d := decodeDoc(t, out.String())
				if len(d.Namespaces) < 4 || len(d.Namespaces) > 6 || d.Summary["interrupted"] != true {
					t.Fatalf("%d namespaces written, summary %v", len(d.Namespaces), d.Summary)
				}
				found := false
				for _, n := range d.Namespaces {
					if n["type"] != "conns" || n["summary"] == nil {
						t.Errorf("not a whole conns document: %v", n)
					}
					found = found || n["netns"] == "ns04" && n["summary"].(map[string]any)["interrupted"] == true
				}
				if !found {
					t.Errorf("no interrupted document of ns04 in %v", d.Namespaces)
				}
			case report.NDJSON:
				lines := strings.Split(strings.TrimSpace(out.String()), "\n")
				for _, l := range lines {
					var m map[string]any
					if err := json.Unmarshal([]byte(l), &m); err != nil {
						t.Fatalf("not JSON: %s", l)
					}
				}
				if !strings.Contains(lines[len(lines)-1], `"type":"netns_total"`) || !strings.Contains(lines[len(lines)-1], `"interrupted":true`) {
					t.Errorf("last line %s", lines[len(lines)-1])
				}
			case report.Table:
				if !strings.Contains(out.String(), "== netns ns04") || !strings.Contains(out.String(), "interrupted before the dump ended") ||
					!strings.HasSuffix(out.String(), "interrupted: the namespaces after the signal were not visited.\n") {
					t.Errorf("table:\n%s", out.String())
				}
			}
		})
	}
}

// TestAllAuditProm: with -o prom nothing is written per namespace; the
// metrics of every namespace are gathered, in order, for one file.
func TestAllAuditProm(t *testing.T) {
	const n = 5
	ks := fakes(t, n)
	var out bytes.Buffer
	tot := &report.Total{Command: "audit"}
	var proms Proms
	cfg := &Config{Format: report.Prom, Parallel: 3, Total: tot, Kernel: byName(ks), Explain: func(err error) string { return err.Error() }}
	job := &Audit{Format: report.Prom, Total: tot, Prom: proms.Add}
	if _, err := All(context.Background(), &out, cfg, &netns.Found{Namespaces: selves(t, n)}, job.Run); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("written per namespace:\n%s", out.String())
	}
	if err := proms.Write(&out, true, ""); err != nil {
		t.Fatal(err)
	}
	m := out.String()
	if strings.Count(m, "# TYPE tcpkeep_audit_success gauge") != 1 || strings.Count(m, "tcpkeep_audit_success{") != n {
		t.Fatalf("metrics:\n%s", m)
	}
	if i, j := strings.Index(m, `tcpkeep_sockets{netns="ns01",state="ESTABLISHED"} 2`), strings.Index(m, `tcpkeep_sockets{netns="ns02",state="ESTABLISHED"} 3`); i < 0 || j < i {
		t.Errorf("socket series out of order or wrong:\n%s", m)
	}
	if tot.Worst() == 0 {
		t.Errorf("the total's worst is none: every namespace is at 7200 s")
	}
}
