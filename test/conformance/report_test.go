package conformance

import (
	"errors"
	"strings"
	"testing"
)

const reportXML = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5">
  <testsuite name="CRI validation" tests="5">
    <testcase name="[BeforeSuite]" classname="CRI validation" status="passed" time="0"></testcase>
    <testcase name="[It] [k8s.io] Runtime info should return version info" status="passed"></testcase>
    <testcase name="[It] [k8s.io] Container should support execSync" status="failed">
      <failure message="Expected exit code 0&#xA;got 1" type="failed">stack</failure>
    </testcase>
    <testcase name="[It] [k8s.io] Image Manager should pull" status="skipped"><skipped message="skipped"></skipped></testcase>
    <testcase name="[It] [k8s.io] Streaming should attach" status="timedout"><failure message="timed out"></failure></testcase>
  </testsuite>
</testsuites>`

func TestParseJUnit(t *testing.T) {
	specs, err := ParseJUnit(strings.NewReader(reportXML))
	if err != nil {
		t.Fatalf("ParseJUnit: %v", err)
	}
	want := []Spec{
		{Name: "[k8s.io] Container should support execSync", Outcome: Failed, Message: "Expected exit code 0\ngot 1"},
		{Name: "[k8s.io] Image Manager should pull", Outcome: Skipped},
		{Name: "[k8s.io] Runtime info should return version info", Outcome: Passed},
		{Name: "[k8s.io] Streaming should attach", Outcome: Failed, Message: "timed out"},
	}
	if len(specs) != len(want) {
		t.Fatalf("got %d specs %+v, want %d", len(specs), specs, len(want))
	}
	for i := range want {
		if specs[i] != want[i] {
			t.Errorf("spec %d = %+v, want %+v", i, specs[i], want[i])
		}
	}
}

func TestParseJUnitRefusesEmptyAndBroken(t *testing.T) {
	if _, err := ParseJUnit(strings.NewReader(`<testsuites><testsuite></testsuite></testsuites>`)); !errors.Is(err, ErrNoSpecs) {
		t.Errorf("empty report: err = %v, want ErrNoSpecs", err)
	}
	if _, err := ParseJUnit(strings.NewReader(`<testsuites><testsuite>`)); err == nil {
		t.Errorf("truncated report: no error")
	}
}

func TestCompare(t *testing.T) {
	direct := []Spec{
		{Name: "a", Outcome: Passed},
		{Name: "b", Outcome: Passed},
		{Name: "c", Outcome: Failed, Message: "no network"},
		{Name: "d", Outcome: Skipped},
		{Name: "e", Outcome: Passed},
		{Name: "f", Outcome: Failed},
	}
	proxied := []Spec{
		{Name: "a", Outcome: Passed},
		{Name: "b", Outcome: Failed, Message: "Unimplemented"},
		{Name: "c", Outcome: Failed},
		{Name: "d", Outcome: Skipped},
		{Name: "f", Outcome: Passed},
	}
	c := Compare(direct, proxied)
	if c.Ran != 5 || c.DirectPassed != 3 || c.ProxiedPassed != 2 {
		t.Errorf("counts = ran %d direct %d proxied %d, want 5 3 2", c.Ran, c.DirectPassed, c.ProxiedPassed)
	}
	if len(c.Regressions) != 2 || c.Regressions[0].Name != "b" || c.Regressions[1].Name != "e" {
		t.Fatalf("regressions = %+v, want b and e (e never ran through criguard)", c.Regressions)
	}
	if c.Regressions[0].Message != "Unimplemented" || !strings.Contains(c.Regressions[1].Message, "did not run") {
		t.Errorf("regression messages = %q, %q", c.Regressions[0].Message, c.Regressions[1].Message)
	}
	if len(c.DirectFailures) != 2 || len(c.Gained) != 1 || c.Gained[0] != "f" {
		t.Errorf("direct failures %+v gained %v, want c,f and f", c.DirectFailures, c.Gained)
	}
}

func TestWriteMarkdown(t *testing.T) {
	runs := []Run{
		{Runtime: "containerd 1.6.20", Comparison: Comparison{Ran: 3, DirectPassed: 2, ProxiedPassed: 1,
			Regressions:    []Spec{{Name: "b", Outcome: Failed, Message: "boom\nstack"}},
			DirectFailures: []Spec{{Name: "c", Outcome: Failed}}}},
		{Runtime: "containerd 2.4.2", Comparison: Comparison{Ran: 4, DirectPassed: 4, ProxiedPassed: 4}, Retried: []string{"flaky"}},
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, Meta{Date: "2026-11-25", Critest: "v1.30.0", Command: "make conformance", Skipped: "port mapping"}, runs); err != nil {
		t.Fatalf("WriteMarkdown: %v", err)
	}
	for _, want := range []string{
		"| containerd 1.6.20 | 3 | 2 | 1 | 1 |",
		"| containerd 2.4.2 | 4 | 4 | 4 | 0 |",
		"- b: boom\n",
		"- c: (no message)",
		"passed when run again: flaky",
		"Skipped on purpose: port mapping.",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// Through criguard, only a failure the direct runs never showed needs a direct run:
// a spec that fails directly too says nothing about criguard.
func TestBaselineUnexplained(t *testing.T) {
	entry := BaselineEntry{FailDirectly: []string{"digest pull", "execSync timeout"}}
	proxied := []Spec{
		{Name: "digest pull", Outcome: Failed},
		{Name: "create container", Outcome: Passed},
		{Name: "port mapping", Outcome: Skipped},
		{Name: "start container", Outcome: Failed, Message: "broken by the proxy"},
	}
	got := entry.Unexplained(proxied)
	if len(got) != 1 || got[0].Name != "start container" {
		t.Errorf("Unexplained = %+v, want only the start container spec", got)
	}
	if got := entry.Unexplained(proxied[:3]); len(got) != 0 {
		t.Errorf("Unexplained = %+v for failures the baseline knows, want none", got)
	}

	b := Baseline{}
	b.Record("containerd 2.4.2", "2026-12-05", Compare(
		[]Spec{{Name: "a", Outcome: Passed}, {Name: "b", Outcome: Failed}},
		[]Spec{{Name: "a", Outcome: Passed}, {Name: "b", Outcome: Failed}}))
	if e := b["containerd 2.4.2"]; e.Date != "2026-12-05" || len(e.FailDirectly) != 1 || e.FailDirectly[0] != "b" {
		t.Errorf("Record = %+v, want b failing directly on 2026-12-05", e)
	}
}
