package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/internal/fakeruntime"
)

// standaloneNode is a fake runtime with one throttled and one free container,
// and the config explain and status would get from their flags.
func standaloneNode(t *testing.T) (serveConfig, *fakeNode) {
	t.Helper()
	node := newFakeNode(t)
	fake := fakeruntime.New()
	_, sock := fakeruntime.Serve(t, fake)
	fake.AddPod("p1", "batch", "etl", "burstable", map[string]string{"team": "data"})
	fake.AddContainer("c1", "p1", "loader")
	fake.AddPod("p2", "web", "front", "besteffort", nil)
	fake.AddContainer("c2", "p2", "nginx")
	dir := node.mkcgroup(t, fake.Paths["c1"])
	node.mkcgroup(t, fake.Paths["c2"])
	mustWrite(t, filepath.Join(dir, "blkio.throttle.write_bps_device"), "254:0 1048576\n")
	mustWrite(t, filepath.Join(dir, "blkio.throttle.io_service_bytes"), "254:0 Read 0\n254:0 Write 3145728\nTotal 3145728\n")
	policyPath := filepath.Join(t.TempDir(), "policy.hcl")
	mustWrite(t, policyPath, policyWithWriteBPS("1MiB"))
	return serveConfig{runtimeEndpoint: "unix://" + sock, policyPath: policyPath, resolver: "cri",
		procRoot: filepath.Join(node.root, "proc"), sysRoot: filepath.Join(node.root, "sys")}, node
}

func TestExplainText(t *testing.T) {
	cfg, _ := standaloneNode(t)
	var out bytes.Buffer
	if err := explain(context.Background(), cfg, "c1", "text", &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"container:    c1",
		"pod:          batch/etl",
		"qos:          burstable",
		`decision:     rule "batch"`,
		"source:       rule rule=batch class=bulk",
		"cgroup dir:",
		"kubepods/burstable/poduid-p1/c1 (cgroup v1)",
		"wanted:       254:0 rbps=- wbps=1MiB riops=- wiops=-",
		"in force:     254:0 rbps=- wbps=1MiB riops=- wiops=-",
		"write:        blkio.throttle.write_bps_device <- \"254:0 1048576\"",
		"pending:      none",
		"buffered writes",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestExplainJSONAndUnknownID(t *testing.T) {
	cfg, _ := standaloneNode(t)
	var out bytes.Buffer
	if err := explain(context.Background(), cfg, "c2", "json", &out); err != nil {
		t.Fatal(err)
	}
	var ex criservice.Explanation
	if err := json.Unmarshal(out.Bytes(), &ex); err != nil {
		t.Fatalf("explain -o json is not JSON: %v\n%s", err, out.String())
	}
	if ex.Decision.Source != "none" || len(ex.Limits) != 0 || ex.Workload.Namespace != "web" {
		t.Errorf("c2 = %+v, want no throttle for namespace web", ex)
	}
	err := explain(context.Background(), cfg, "missing", "text", &out)
	if err == nil || !strings.Contains(err.Error(), "neither a container nor a pod") {
		t.Errorf("unknown id: %v", err)
	}
}

func TestStatusTableAndJSON(t *testing.T) {
	cfg, _ := standaloneNode(t)
	var out, errOut bytes.Buffer
	if err := status(context.Background(), cfg, "table", &out, &errOut); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "KIND") {
		t.Fatalf("status table = %q, want a header and two containers", out.String())
	}
	var loader string
	for _, l := range lines {
		if strings.Contains(l, "loader") {
			loader = l
		}
	}
	for _, want := range []string{"batch/etl", "yes", "wbps=1MiB"} {
		if !strings.Contains(loader, want) {
			t.Errorf("loader row lacks %q: %q", want, loader)
		}
	}
	if strings.Contains(loader, "write=3.0MiB/0") {
		t.Errorf("the narrow table shows usage, a -o wide column: %q", loader)
	}
	out.Reset()
	if err := status(context.Background(), cfg, "json", &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var reports []criservice.Report
	if err := json.Unmarshal(out.Bytes(), &reports); err != nil || len(reports) != 2 {
		t.Fatalf("status -o json = %v, %v", reports, err)
	}
}

func TestStatusRuntimeDownIsAClearError(t *testing.T) {
	cfg, _ := standaloneNode(t)
	cfg.runtimeEndpoint = "unix://" + filepath.Join(t.TempDir(), "nothing.sock")
	err := status(context.Background(), cfg, "table", &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "nothing.sock") {
		t.Fatalf("got %v, want an error naming the socket", err)
	}
}

func TestStandaloneRefusesBrokenPolicy(t *testing.T) {
	cfg, _ := standaloneNode(t)
	os.WriteFile(cfg.policyPath, []byte("rule {"), 0o644)
	err := status(context.Background(), cfg, "table", &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "policy.hcl:1") {
		t.Fatalf("got %v, want the policy's file:line", err)
	}
}

func TestOutputFormatIsChecked(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"status", "-o", "yaml"}, &bytes.Buffer{}, &stderr)
	if code := exitCode(err, &stderr); code != 2 || !strings.Contains(stderr.String(), "want table, wide or json") {
		t.Fatalf("status -o yaml: exit %d, %q; want exit 2 naming the formats", code, stderr.String())
	}
}

// Without the daemon's record of the limits it wrote, explain and status cannot
// tell criguard's limits from another tool's: they say the record is missing and
// where they looked, and call nothing foreign.
func TestNoOwnershipRecordCallsNothingForeign(t *testing.T) {
	cfg, _ := standaloneNode(t)
	for _, tt := range []struct {
		name, stateDir, want string
	}{
		{"no state dir", "", "no --state-dir given"},
		{"state dir without the record", filepath.Join(t.TempDir(), "state"), "owned.json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg.stateDir = tt.stateDir
			want := tt.want
			if tt.stateDir != "" {
				want = filepath.Join(tt.stateDir, "owned.json")
			}
			var out bytes.Buffer
			if err := explain(context.Background(), cfg, "c1", "text", &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "owner:        unknown: ") || !strings.Contains(out.String(), want) {
				t.Errorf("explain does not say the record is missing at %s:\n%s", want, out.String())
			}
			if strings.Contains(out.String(), "another tool") || strings.Contains(out.String(), "foreign:") {
				t.Errorf("explain calls criguard's limit foreign without the record:\n%s", out.String())
			}

			var table, notes bytes.Buffer
			if err := status(context.Background(), cfg, "wide", &table, &notes); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(notes.String(), want) {
				t.Errorf("status notes do not say where the record was looked for (%s):\n%s", want, notes.String())
			}
			loader := ""
			for _, l := range strings.Split(table.String(), "\n") {
				if strings.Contains(l, "loader") {
					loader = l
				}
			}
			if !strings.Contains(loader, "unknown (no record)") || strings.Count(loader, "wbps=1MiB") != 2 {
				t.Errorf("loader row = %q, want its limit in force and wanted, and the foreign column unknown", loader)
			}
			var reports []criservice.Report
			table.Reset()
			if err := status(context.Background(), cfg, "json", &table, &notes); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(table.Bytes(), &reports); err != nil {
				t.Fatal(err)
			}
			for _, r := range reports {
				if len(r.Foreign) != 0 || !strings.Contains(r.RecordMissing, want) {
					t.Errorf("%s: foreign %v, recordMissing %q; want none foreign and the record missing at %s", r.ID, r.Foreign, r.RecordMissing, want)
				}
			}
		})
	}
}

// With the record, a limit criguard did not write is foreign, and its own is not.
func TestOwnershipRecordTellsForeign(t *testing.T) {
	cfg, node := standaloneNode(t)
	dir := filepath.Join(node.blkio, "kubepods", "burstable", "poduid-p1", "c1")
	mustWrite(t, filepath.Join(dir, "blkio.throttle.write_bps_device"), "254:0 1048576\n254:16 524288\n")
	cfg.stateDir = t.TempDir()
	mustWrite(t, filepath.Join(cfg.stateDir, "owned.json"),
		`{"version":1,"dirs":{"`+dir+`":[{"device":"254:0","wbps":1048576}]}}`)
	var out bytes.Buffer
	if err := explain(context.Background(), cfg, "c1", "text", &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "foreign:      254:16 rbps=- wbps=512KiB riops=- wiops=- (written by another tool") ||
		strings.Contains(out.String(), "owner:") {
		t.Errorf("explain with the record: want 254:16 foreign and no unknown owner:\n%s", out.String())
	}
	var table, notes bytes.Buffer
	if err := status(context.Background(), cfg, "wide", &table, &notes); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(table.String(), "unknown") || strings.Contains(notes.String(), "unknown") {
		t.Errorf("status with the record says unknown:\n%s\n%s", table.String(), notes.String())
	}
	if !strings.Contains(table.String(), "254:16 rbps=- wbps=512KiB") {
		t.Errorf("status -o wide lacks the foreign limit:\n%s", table.String())
	}
	table.Reset()
	if err := status(context.Background(), cfg, "table", &table, &notes); err != nil {
		t.Fatal(err)
	}
	if loader := rowWith(table.String(), "loader"); !strings.HasSuffix(loader, "  foreign") {
		t.Errorf("the narrow table does not flag the foreign limit in NOTE:\n%s", table.String())
	}
}
