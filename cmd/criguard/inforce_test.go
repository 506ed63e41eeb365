package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice"
)

// top shows the class's limit beside the one in force: "=" when the same, the
// class's where a loop holds another, "-" when not known.
func TestTopShowsTheClassLimitBesideTheLimitInForce(t *testing.T) {
	rates := []criservice.Rate{
		{Namespace: "batch", Pod: "etl", Container: "writer", Device: "254:0", WriteBPS: 20 << 20,
			Limit: criservice.Limit{WriteBPS: 20 << 20}, ClassLimit: &criservice.Limit{WriteBPS: 160 << 20}},
		{Namespace: "batch", Pod: "etl", Container: "steady", Device: "254:0", WriteBPS: 10 << 20,
			Limit: criservice.Limit{WriteBPS: 40 << 20}, ClassLimit: &criservice.Limit{WriteBPS: 40 << 20}},
		{Namespace: "web", Pod: "front", Container: "nginx", Device: "254:0", ReadBPS: 1 << 20},
	}
	var out bytes.Buffer
	if err := writeTop(&out, topConfig{once: true, sortBy: sortByRate}, rates, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	for container, want := range map[string][]string{
		"writer": {"w=20MiB", "w=160MiB"},
		"steady": {"w=40MiB", "="},
		"nginx":  {"-", "-"},
	} {
		cells := tableCells(rowWith(out.String(), container))
		if len(cells) < 9 || cells[7] != want[0] || cells[8] != want[1] {
			t.Errorf("%s row %q: want LIMIT %s and CLASS %s", container, cells, want[0], want[1])
		}
	}
	if header := tableCells(rowWith(out.String(), "NAMESPACE/POD")); len(header) < 9 || header[7] != "LIMIT" || header[8] != "CLASS" {
		t.Errorf("header %q", header)
	}
}

// explain prints the class's limits and why the limit in force differs.
func TestExplainSaysWhyTheLimitInForceDiffers(t *testing.T) {
	dev := cgroup.Device{Major: 254}
	ex := criservice.Explanation{Kind: "container", ID: "c2",
		Current:      []cgroup.IOLimit{{Device: dev, WriteBPS: 20 << 20}},
		ClassLimits:  []cgroup.IOLimit{{Device: dev, WriteBPS: 160 << 20}},
		InForceNotes: []string{"write_bps on 254:0: 20MiB/s in force, the class gives 160MiB/s: yielding, protecting web/db"}}
	var out bytes.Buffer
	writeExplanation(&out, ex, "")
	for _, want := range []string{
		"in force:     254:0 rbps=- wbps=20MiB riops=- wiops=-",
		"class gives:  254:0 rbps=- wbps=160MiB riops=- wiops=-",
		"why:          write_bps on 254:0: 20MiB/s in force, the class gives 160MiB/s: yielding, protecting web/db",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain lacks %q:\n%s", want, out.String())
		}
	}
}
