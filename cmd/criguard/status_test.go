package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/internal/fakeruntime"
)

// terminalWidth is what the narrow status table must fit.
const terminalWidth = 120

// rowWith is the line of table that contains s, or "".
func rowWith(table, s string) string {
	for _, l := range strings.Split(table, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// tableCells splits a tabwriter line into its cells: tabwriter pads with at
// least two spaces, and no cell of these tests holds two in a row.
func tableCells(line string) []string {
	return regexp.MustCompile(`  +`).Split(strings.TrimRight(line, " "), -1)
}

// Names as long as Kubernetes allows (a namespace and a container name are DNS
// labels, 63; a pod name a DNS subdomain, 253), a 64-hex ID, and limits on three
// devices.
var (
	longNamespace = "batch-" + strings.Repeat("n", 56) + "z"
	longPod       = "etl-" + strings.Repeat("p", 243) + "-4jkcz"
	longContainer = "loader-" + strings.Repeat("c", 55) + "z"
	longID        = strings.Repeat("0123456789abcdef", 4)
)

// longNamesNode is a fake runtime with one container whose names, ID and
// limits are as long as they get.
func longNamesNode(t *testing.T) (serveConfig, string) {
	t.Helper()
	node := newFakeNode(t)
	fake := fakeruntime.New()
	_, sock := fakeruntime.Serve(t, fake)
	fake.AddPod("p1", longNamespace, longPod, "burstable", nil)
	fake.AddContainer(longID, "p1", longContainer)
	dir := node.mkcgroup(t, fake.Paths[longID])
	for _, f := range []string{"read_bps_device", "write_bps_device", "read_iops_device", "write_iops_device"} {
		mustWrite(t, filepath.Join(dir, "blkio.throttle."+f), "8:0 1048576\n8:16 2097152\n254:0 3145728\n")
	}
	policyPath := filepath.Join(t.TempDir(), "policy.hcl")
	mustWrite(t, policyPath, policyWithWriteBPS("1MiB"))
	return serveConfig{runtimeEndpoint: "unix://" + sock, policyPath: policyPath, resolver: "cri",
		procRoot: filepath.Join(node.root, "proc"), sysRoot: filepath.Join(node.root, "sys")}, dir
}

func TestStatusNarrowFitsATerminalWithLongNames(t *testing.T) {
	cfg, dir := longNamesNode(t)
	var out bytes.Buffer
	if err := status(context.Background(), cfg, "table", &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("status = %q, want a header and one row", out.String())
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > terminalWidth {
			t.Errorf("line of %d columns, want at most %d:\n%s", n, terminalWidth, l)
		}
	}
	row := tableCells(lines[1])
	if len(row) != len(narrowStatusColumns) {
		t.Fatalf("row cells = %q, want %d", row, len(narrowStatusColumns))
	}
	want := map[string]func(string) bool{
		"ID": func(c string) bool { return c == longID[:13] },
		// Cut in the middle: the namespace's start and the replica suffix stay.
		"NAMESPACE/POD": func(c string) bool {
			return strings.HasPrefix(c, "batch-nnn") && strings.HasSuffix(c, "pp-4jkcz") && strings.Contains(c, "…")
		},
		"CONTAINER": func(c string) bool { return strings.HasPrefix(c, "loader-cc") && strings.HasSuffix(c, "…") },
		// The limits are none of criguard's, and it wants none: nothing to undo.
		"MATCH": func(c string) bool { return c == "yes" },
		"IN FORCE": func(c string) bool {
			return strings.HasPrefix(c, "8:0 rbps=1MiB wbps=1MiB") && strings.HasSuffix(c, "…")
		},
	}
	for i, c := range narrowStatusColumns {
		if ok := want[c.header]; ok != nil && !ok(row[i]) {
			t.Errorf("%s = %q", c.header, row[i])
		}
	}

	// Nothing is cut in -o wide or -o json.
	out.Reset()
	if err := status(context.Background(), cfg, "wide", &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "…") {
		t.Errorf("-o wide cuts a cell:\n%s", out.String())
	}
	for _, full := range []string{longNamespace + "/" + longPod, longContainer, dir,
		"8:0 rbps=1MiB wbps=1MiB riops=1048576 wiops=1048576; 8:16 rbps=2MiB wbps=2MiB riops=2097152 wiops=2097152; 254:0 rbps=3MiB"} {
		if !strings.Contains(out.String(), full) {
			t.Errorf("-o wide lacks %q in full:\n%s", full, out.String())
		}
	}
	out.Reset()
	if err := status(context.Background(), cfg, "json", &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var reports []criservice.Report
	if err := json.Unmarshal(out.Bytes(), &reports); err != nil || len(reports) != 1 {
		t.Fatalf("status -o json = %v, %v", reports, err)
	}
	if r := reports[0]; r.ID != longID || r.Namespace != longNamespace || r.Pod != longPod || r.Container != longContainer || len(r.Have) != 3 {
		t.Errorf("-o json = %+v, want the names, the ID and three devices in full", r)
	}
}

// The narrow widths are a promise for any row, not only the ones a fake runtime
// makes: every column at its longest, every note flag at once.
func TestStatusNarrowWidthsBoundEveryRow(t *testing.T) {
	width := 0
	for _, c := range narrowStatusColumns {
		if c.width == 0 || utf8.RuneCountInString(c.header) > c.width {
			t.Errorf("column %s: width %d, want one that holds its header", c.header, c.width)
		}
		width += c.width + statusPadding
	}
	if width -= statusPadding; width > terminalWidth {
		t.Errorf("the narrow columns take %d, want at most %d", width, terminalWidth)
	}
	limit := cgroup.IOLimit{ReadBPS: 1 << 40, WriteBPS: 1 << 40, ReadIOPS: 1 << 40, WriteIOPS: 1 << 40}
	worst := criservice.Report{Kind: "container", ID: longID, Namespace: longNamespace, Pod: longPod, Container: longContainer,
		Have: []cgroup.IOLimit{limit, limit}, Foreign: []cgroup.IOLimit{limit}, Conflicts: []string{"IOWriteBandwidthMax"},
		Resources: []criservice.ResourceState{{File: "pids.max", Want: "100", Have: "max", Note: "not enforced: v1"}},
		Match:     true, Error: strings.Repeat("the runtime said no ", 20)}
	var out bytes.Buffer
	if err := writeStatusTable(&out, narrowStatusColumns, []criservice.Report{worst}); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if n := utf8.RuneCountInString(l); n > terminalWidth {
			t.Errorf("line of %d columns, want at most %d:\n%s", n, terminalWidth, l)
		}
	}
	if row := tableCells(rowWith(out.String(), "container")); len(row) != len(narrowStatusColumns) ||
		row[4] != "error" || row[6] != "foreign,systemd…" {
		t.Errorf("row = %q, want MATCH error and the NOTE flags cut", row)
	}
}

// -o wide has every column, each cell in full, and every column of the narrow
// table beside them.
func TestStatusWideHasEveryColumn(t *testing.T) {
	cfg, node := standaloneNode(t)
	var out bytes.Buffer
	if err := status(context.Background(), cfg, "wide", &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	header := tableCells(rowWith(out.String(), "KIND"))
	wantHeader := []string{"KIND", "ID", "NAMESPACE/POD", "CONTAINER", "MATCH", "IN FORCE (read back)", "WANTED",
		"CLASS (where in force differs)", "WEIGHTS", "FOREIGN (not criguard's)", "USAGE", "CGROUP", "NOTE"}
	if strings.Join(header, "|") != strings.Join(wantHeader, "|") {
		t.Errorf("-o wide header = %q, want %q", header, wantHeader)
	}
	for _, c := range narrowStatusColumns {
		if !strings.Contains(strings.Join(header, "|"), c.header) {
			t.Errorf("-o wide lacks the narrow table's column %s", c.header)
		}
	}
	loader := tableCells(rowWith(out.String(), "loader"))
	want := []string{"container", "c1", "batch/etl", "loader", "yes", "254:0 rbps=- wbps=1MiB riops=- wiops=-",
		"254:0 rbps=- wbps=1MiB riops=- wiops=-", "=", "-", "unknown (no record)", "254:0 read=0B/0 write=3.0MiB/0",
		filepath.Join(node.blkio, "kubepods", "burstable", "poduid-p1", "c1"), "-"}
	if strings.Join(loader, "|") != strings.Join(want, "|") {
		t.Errorf("-o wide loader row =\n%q\nwant\n%q", loader, want)
	}
}

func TestCut(t *testing.T) {
	for _, tt := range []struct {
		in     string
		width  int
		middle bool
		want   string
	}{
		{"loader", 6, false, "loader"},
		{"loader", 0, false, "loader"},
		{"loader-x", 6, false, "loade…"},
		{"batch/etl-5d78c9-4jkcz", 11, true, "batch…4jkcz"},
		{"batch/etl-5d78c9-4jkcz", 10, true, "batch…jkcz"},
		{"ééééééé", 4, false, "ééé…"},
	} {
		got := cut(tt.in, tt.width, tt.middle)
		if got != tt.want || (tt.width > 0 && utf8.RuneCountInString(got) > tt.width) {
			t.Errorf("cut(%q, %d, %v) = %q, want %q", tt.in, tt.width, tt.middle, got, tt.want)
		}
	}
}
