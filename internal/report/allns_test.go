package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// nsMeta is the header of the records about one namespace of an --all-netns run.
func nsMeta(name string, ino uint64, pod string) Meta {
	m := testMeta
	m.NetNS, m.NetNSInode, m.PodUID = name, ino, pod
	if pod != "" {
		m.ContainerID, m.NetNSComm = strings.Repeat("ab", 32), "pause"
	}
	return m
}

// frameRun writes what an --all-netns audit writes in format f: three
// namespaces, the second of which wrote nothing before it failed, the third
// of which failed midway, and a process enumeration could not look at.
func frameRun(t *testing.T, f Format) string {
	t.Helper()
	var out bytes.Buffer
	fr := NewFrame(&out, f, testMeta, "audit")
	tot := &Total{Command: "audit", Namespaces: 3}
	one := func(m Meta, findings int, fail bool) {
		fr.Heading(fr, m)
		aw := NewAuditWriter(fr, f, m, Words{Remedy: true})
		sum := audit.Summary{Findings: map[audit.Code]*[audit.Critical + 1]int{}, Worst: audit.Warning}
		for range findings {
			aw.Finding(&audit.Finding{Code: audit.SysctlKeepaliveDefault, Severity: audit.Warning, Value: 2 * time.Hour,
				Keepalive: sysctl.Defaults, Remedy: audit.RemedyTune})
			sum.Findings[audit.SysctlKeepaliveDefault] = &[audit.Critical + 1]int{audit.Warning: findings}
		}
		sum.Counts.Add(&diag.Socket{State: diag.StateEstablished})
		if fail {
			aw.Abort()
		} else {
			aw.Finish(&sum, m.NetNS)
			tot.AddAudit(&sum)
			tot.Visited++
		}
		fr.Next()
	}
	one(nsMeta("pid:1", 4026531840, ""), 1, false)
	fr.Next() // the second was never opened: Done, then its record
	tot.Gone++
	fr.Error(&NetNSError{Meta: nsMeta("blue", 4026532001, ""), Reason: "gone", Err: "no such network namespace (gone since it was found)"})
	one(nsMeta("pid:4242", 4026532002, "9d6e5c9a-2b1f-4a53-9c1e-0b6a3f8e2d11"), 2, true)
	tot.Failed++
	fr.Error(&NetNSError{Meta: nsMeta("pid:4242", 4026532002, ""), Reason: "error", Err: "dump failed", Headed: true})
	tot.Skipped++
	fr.Error(&NetNSError{Meta: Meta{NetNS: "pid:77"}, Reason: "denied", Err: "permission denied", Missing: "CAP_SYS_PTRACE"})
	if err := fr.Close(tot); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestFrameJSONIsOneDocument: whatever each namespace wrote, failed or not,
// the json output is one document whose namespaces are each namespace's own
// document or netns_error record, in order, with the total as its summary.
func TestFrameJSONIsOneDocument(t *testing.T) {
	out := frameRun(t, JSON)
	var doc struct {
		Type, NetNS, Command string
		Namespaces           []map[string]any
		Summary              map[string]any
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("more than one document:\n%s", out)
	}
	if doc.Type != "all_netns" || doc.NetNS != AllNetNS || doc.Command != "audit" {
		t.Errorf("document %q netns %q command %q", doc.Type, doc.NetNS, doc.Command)
	}
	var got []string
	for _, n := range doc.Namespaces {
		got = append(got, n["type"].(string)+" "+n["netns"].(string))
	}
	want := []string{"audit pid:1", "netns_error blue", "audit pid:4242", "netns_error pid:4242", "netns_error pid:77"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("namespaces %v, want %v\n%s", got, want, out)
	}
	if _, ok := doc.Namespaces[2]["summary"]; ok {
		t.Errorf("the document of a run that failed midway has a summary: %v", doc.Namespaces[2])
	}
	if f := doc.Namespaces[2]["findings"].([]any); len(f) != 2 {
		t.Errorf("the failed run's document holds %d findings, want the 2 written", len(f))
	}
	if doc.Namespaces[2]["pod_uid"] != "9d6e5c9a-2b1f-4a53-9c1e-0b6a3f8e2d11" || doc.Namespaces[2]["netns_comm"] != "pause" {
		t.Errorf("a pod's document without its pod_uid and netns_comm: %v", doc.Namespaces[2])
	}
	if doc.Namespaces[4]["missing_capability"] != "CAP_SYS_PTRACE" || doc.Namespaces[4]["netns_inode"] != nil {
		t.Errorf("a skipped process's record: %v", doc.Namespaces[4])
	}
	s := doc.Summary
	for k, v := range map[string]any{"command": "audit", "namespaces": 3.0, "namespaces_visited": 1.0, "namespaces_gone": 1.0,
		"namespaces_failed": 1.0, "skipped": 1.0, "sockets": 1.0, "worst": "warning", "interrupted": false} {
		if s[k] != v {
			t.Errorf("summary %s = %v, want %v", k, s[k], v)
		}
	}
	if f := s["findings"].(map[string]any); f["sysctl_keepalive_default"] != 1.0 {
		t.Errorf("summary findings %v: the failed namespace's do not count", f)
	}
}

// TestFrameNDJSONAndTable: ndjson is each namespace's lines, headed with it,
// then a netns_total; the table groups each namespace under a heading, a
// blank line between two, and ends with the total.
func TestFrameNDJSONAndTable(t *testing.T) {
	var types []string
	for _, line := range strings.Split(strings.TrimSuffix(frameRun(t, NDJSON), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, line)
		}
		types = append(types, m["type"].(string)+" "+m["netns"].(string))
		if m["type"] == "finding" && m["netns"] == "pid:1" && m["netns_inode"] != 4026531840.0 {
			t.Errorf("a finding without its namespace's inode: %s", line)
		}
	}
	want := "finding pid:1, audit_summary pid:1, netns_error blue, finding pid:4242, finding pid:4242, netns_error pid:4242, netns_error pid:77, netns_total *"
	if strings.Join(types, ", ") != want {
		t.Errorf("ndjson records:\n%s\nwant\n%s", strings.Join(types, ", "), want)
	}

	table := frameRun(t, Table)
	for _, want := range []string{
		"== netns pid:1 (inode 4026531840)\nWARNING sysctl_keepalive_default (1)\n",
		"worst warning (took 0s).\n\n== netns blue (inode 4026532001)\n  not read: no such network namespace",
		"\n\n== netns pid:4242 (inode 4026532002, container abababababab, pod 9d6e5c9a-2b1f-4a53-9c1e-0b6a3f8e2d11, comm pause)\n  not read: dump failed\n",
		"\n\n== netns pid:77\n  not read: permission denied\n\nTotal over 3 namespaces (1 visited, 1 gone, 1 not read, 1 more not looked at): 1 socket: 1 ESTABLISHED; 1 finding (1 warning), worst warning (took ",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table without %q:\n%s", want, table)
		}
	}
}

// TestHeaderKeys: the header's keys come first, in order, and those not known
// are absent.
func TestHeaderKeys(t *testing.T) {
	b := AppendHeader(nil, "x", nsMeta("pid:9", 77, "u-1"))
	want := `"type":"x","ts":"2026-11-23T04:00:00Z","host":"web-1","netns":"pid:9","netns_inode":77,"container_id":"` + strings.Repeat("ab", 32) + `","pod_uid":"u-1","netns_comm":"pause"`
	if string(b) != want {
		t.Errorf("header\n%s\nwant\n%s", b, want)
	}
	if b := AppendHeader(nil, "x", testMeta); strings.Contains(string(b), "netns_inode") || strings.Contains(string(b), "pod_uid") {
		t.Errorf("unknown keys written: %s", b)
	}
}

// TestPromManyNamespaces: each metric is written once, with a series per
// namespace that has it, so the textfile collector takes the file.
func TestPromManyNamespaces(t *testing.T) {
	ct := 300 * time.Second
	sum := &audit.Summary{Findings: map[audit.Code]*[audit.Critical + 1]int{}}
	m := NewMetrics(BuildInfo{})
	for _, p := range []PromAudit{
		{NetNS: "pid:1", Tunables: &sysctl.Tunables{Keepalive: sysctl.Defaults}, Summary: sum},
		{NetNS: "blue", Tunables: &sysctl.Tunables{Keepalive: sysctl.Defaults, ConntrackEstablished: &ct}, Summary: sum},
		{NetNS: `we"ird`},
	} {
		m.SetAudit(p)
	}
	var out bytes.Buffer
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	b := out.String()
	for _, name := range []string{"tcpkeep_audit_success", "tcpkeep_keepalive_time_seconds", "tcpkeep_conntrack_established_timeout_seconds", "tcpkeep_sockets"} {
		if n := strings.Count(b, "# TYPE "+name+" "); n != 1 {
			t.Errorf("%s has %d TYPE lines, want 1", name, n)
		}
	}
	for _, want := range []string{
		"tcpkeep_audit_success{netns=\"blue\"} 1\ntcpkeep_audit_success{netns=\"pid:1\"} 1\ntcpkeep_audit_success{netns=\"we\\\"ird\"} 0\n",
		"# TYPE tcpkeep_conntrack_established_timeout_seconds gauge\ntcpkeep_conntrack_established_timeout_seconds{netns=\"blue\"} 300\n# HELP",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("metrics without %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, `tcpkeep_keepalive_time_seconds{netns="we\"ird"}`) {
		t.Errorf("a failed audit has tunables:\n%s", b)
	}
}

// TestPodSysctls: a tunables finding in a pod's namespace says how its spec
// sets the recommended values, beside the command that sets them now; a
// namespace that is not a pod's gets the command alone.
func TestPodSysctls(t *testing.T) {
	f := &audit.Finding{Code: audit.SysctlKeepaliveDefault, Severity: audit.Warning, Value: 2 * time.Hour,
		Keepalive: sysctl.Defaults, Remedy: audit.RemedyTune}
	rec := sysctl.Keepalive{Time: 210 * time.Second, Intvl: 21 * time.Second, Probes: 5}
	pod := Words{Remedy: true, NetNS: "pid:4242", PodUID: "9d6e", Recommended: rec}.Message(f)
	for _, want := range []string{
		`securityContext: {sysctls: [{name: net.ipv4.tcp_keepalive_time, value: "210"}, {name: net.ipv4.tcp_keepalive_intvl, value: "21"}, {name: net.ipv4.tcp_keepalive_probes, value: "5"}]}`,
		"pod 9d6e", "since Kubernetes 1.29", "tcpkeep --netns pid:4242 sysctl set --time 210 --intvl 21 --probes 5",
	} {
		if !strings.Contains(pod, want) {
			t.Errorf("pod's message without %q:\n%s", want, pod)
		}
	}
	if host := (Words{Remedy: true, Recommended: rec}).Message(f); strings.Contains(host, "securityContext") || !strings.Contains(host, "tcpkeep sysctl recommend --apply") {
		t.Errorf("a namespace that is no pod's: %s", host)
	}
}
