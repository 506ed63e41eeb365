package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/criservice"
)

func ptr(v float64) *float64 { return &v }

func TestTopSortsByRateOrPercentOfLimit(t *testing.T) {
	rates := []criservice.Rate{
		{Namespace: "web", Pod: "front", Container: "nginx", Device: "254:0", ReadBPS: 50 << 20},
		{Namespace: "batch", Pod: "etl", Container: "loader", Device: "254:0", WriteBPS: 1 << 20,
			Limit: criservice.Limit{WriteBPS: 1 << 20}, PercentOfLimit: ptr(100)},
		{Namespace: "batch", Pod: "etl", Container: "idle", Device: "254:0",
			Limit: criservice.Limit{WriteBPS: 1 << 20}, PercentOfLimit: ptr(0)},
	}
	order := func() string {
		var names []string
		for _, r := range rates {
			names = append(names, r.Container)
		}
		return strings.Join(names, ",")
	}
	sortRates(rates, sortByRate)
	if got := order(); got != "nginx,loader,idle" {
		t.Errorf("by rate: %s", got)
	}
	sortRates(rates, sortByLimit)
	if got := order(); got != "loader,idle,nginx" {
		t.Errorf("by %% of limit: %s, want unlimited last", got)
	}
}

func TestTopTableIsPlainWithoutTerminal(t *testing.T) {
	rates := []criservice.Rate{
		{Kind: "container", Namespace: "batch", Pod: "etl", Container: "loader", Device: "254:0", WriteBPS: 1 << 20, WriteIOPS: 16,
			Limit: criservice.Limit{ReadBPS: 2 << 20, WriteBPS: 1 << 20}, PercentOfLimit: ptr(97.4)},
		{Kind: "pod", Namespace: "team", Pod: "shared", Device: "254:0", Limit: criservice.Limit{WriteIOPS: 20},
			PercentOfLimit: ptr(0), PressureSome: ptr(12.6), PressureFull: ptr(3)},
	}
	var out bytes.Buffer
	now := time.Date(2026, 11, 26, 7, 30, 0, 0, time.UTC)
	if err := writeTop(&out, topConfig{sortBy: sortByRate, output: "table"}, rates, now, nil); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"2026-11-26T07:30:00Z  2 rows, sorted by rate", "NAMESPACE/POD", "% LIMIT",
		"batch/etl", "loader", "1.0MiB", "r=2MiB w=1MiB", "97%", "(pod budget)", "wiops=20", "13%/3%"} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "\x1b") {
		t.Errorf("escape codes in plain output:\n%q", text)
	}
	out.Reset()
	if err := writeTop(&out, topConfig{sortBy: sortByRate, output: "table", once: true}, nil, now, nil); err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(out.String(), "2026") {
		t.Errorf("--once prints a timestamp line: %q", out.String())
	}
}

// top over the fake node: two samples give the throttled container's rate and
// its share of the limit; -o json is what scripts read.
func TestTopSamplesStandalone(t *testing.T) {
	cfg, node := standaloneNode(t)
	st, err := newStandalone(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sampler := &topSampler{reporter: st.svc.Reporter()}
	ctx := context.Background()
	if _, err := sampler.sample(ctx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(node.blkio, "kubepods/burstable/poduid-p1/c1")
	started := time.Now()
	time.Sleep(200 * time.Millisecond)
	// 3 MiB written since the first sample: whatever the interval, far above 1 MiB/s.
	mustWrite(t, filepath.Join(dir, "blkio.throttle.io_service_bytes"), "254:0 Read 0\n254:0 Write 6291456\nTotal 6291456\n")
	rates, err := sampler.sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(started).Seconds()
	var loader *criservice.Rate
	for i := range rates {
		if rates[i].ID == "c1" {
			loader = &rates[i]
		}
	}
	if loader == nil || loader.Limit.WriteBPS != 1<<20 || loader.PercentOfLimit == nil {
		t.Fatalf("rates = %+v, want c1 with its 1 MiB/s limit", rates)
	}
	if want := 300 / elapsed; *loader.PercentOfLimit < want*0.9 || *loader.PercentOfLimit > 300/0.2 {
		t.Errorf("c1 at %.0f%% of its limit, want about %.0f%%", *loader.PercentOfLimit, want)
	}

	var out bytes.Buffer
	args := []string{"top", "--once", "-o", "json", "--runtime-endpoint", cfg.runtimeEndpoint, "--policy", cfg.policyPath, "--resolver", "cri"}
	t.Setenv("CRIGUARD_STATE_DIR", t.TempDir())
	// The standalone reads the host's /proc for the cgroup mode: only the JSON
	// shape is checked through run, on whatever this host is.
	err = run(ctx, args, &out, &bytes.Buffer{})
	if err != nil {
		t.Skipf("top on this host's cgroups: %v", err)
	}
	var sample topSample
	if err := json.Unmarshal(out.Bytes(), &sample); err != nil || sample.SortedBy != "rate" || sample.Workloads == nil {
		t.Errorf("top --once -o json = %q, %v", out.String(), err)
	}
}

func TestTopRefreshesPlainUntilCancelled(t *testing.T) {
	cfg, _ := standaloneNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	if err := top(ctx, cfg, topConfig{interval: 200 * time.Millisecond, sortBy: sortByLimit, output: "table"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	frames := strings.Count(out.String(), "sorted by % of limit")
	if frames < 2 || !strings.Contains(out.String(), "batch/etl") || strings.Contains(out.String(), "\x1b") {
		t.Errorf("%d frames, want several plain ones with batch/etl:\n%s", frames, out.String())
	}
}

func TestTopRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"top", "--sort", "name"}, {"top", "--interval", "1ms"}, {"top", "-o", "yaml"}} {
		if code := exitCode(run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}), &bytes.Buffer{}); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
