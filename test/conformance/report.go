// Package conformance runs the CRI validation suite (critest) against containerd and
// CRI-O directly and through criguard, and fails when a spec that passes directly fails
// through criguard. This file holds the pure part: reading critest's JUnit reports,
// comparing two runs, writing docs/CONFORMANCE.md. The run itself is
// conformance_test.go (build tag conformance), started by test/conformance/run.sh.
package conformance

import (
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Outcome is what became of one spec.
type Outcome string

// The outcomes a comparison distinguishes; ginkgo's panicked, timedout and
// interrupted count as failed.
const (
	Passed  Outcome = "passed"
	Failed  Outcome = "failed"
	Skipped Outcome = "skipped"
)

// Spec is one ginkgo spec of a critest run.
type Spec struct {
	Name    string
	Outcome Outcome
	// Message is the failure message, empty unless Failed.
	Message string
}

type junitReport struct {
	Suites []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Status  string `xml:"status,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// ParseJUnit reads a ginkgo JUnit report (critest -ginkgo.junit-report) and returns its
// specs ("[It] …" cases; suite setup nodes are left out), sorted by name.
func ParseJUnit(r io.Reader) ([]Spec, error) {
	var report junitReport
	if err := xml.NewDecoder(r).Decode(&report); err != nil {
		return nil, fmt.Errorf("conformance: decode JUnit report: %w", err)
	}
	var specs []Spec
	for _, suite := range report.Suites {
		for _, c := range suite.Cases {
			name, ok := strings.CutPrefix(c.Name, "[It] ")
			if !ok {
				continue
			}
			s := Spec{Name: name}
			switch c.Status {
			case "passed":
				s.Outcome = Passed
			case "skipped", "pending":
				s.Outcome = Skipped
			default:
				s.Outcome = Failed
				if c.Failure != nil {
					s.Message = c.Failure.Message
				} else if c.Error != nil {
					s.Message = c.Error.Message
				}
			}
			specs = append(specs, s)
		}
	}
	if len(specs) == 0 {
		return nil, ErrNoSpecs
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs, nil
}

// Comparison sets a run through criguard against a direct run.
type Comparison struct {
	// Ran counts the specs that ran directly (not skipped).
	Ran int
	// DirectPassed and ProxiedPassed count passing specs of each run.
	DirectPassed, ProxiedPassed int
	// Regressions passed directly and did not pass through criguard.
	Regressions []Spec
	// DirectFailures failed directly: they say nothing about criguard.
	DirectFailures []Spec
	// Gained failed directly and passed through criguard (flakes, usually).
	Gained []string
}

// Compare finds the specs that passed directly but not through criguard.
func Compare(direct, proxied []Spec) Comparison {
	var c Comparison
	through := map[string]Spec{}
	for _, s := range proxied {
		through[s.Name] = s
		if s.Outcome == Passed {
			c.ProxiedPassed++
		}
	}
	for _, d := range direct {
		if d.Outcome == Skipped {
			continue
		}
		c.Ran++
		p, ok := through[d.Name]
		switch {
		case d.Outcome == Passed:
			c.DirectPassed++
			if !ok || p.Outcome != Passed {
				if !ok {
					p = Spec{Name: d.Name, Outcome: Failed, Message: "did not run through criguard"}
				}
				c.Regressions = append(c.Regressions, p)
			}
		default:
			c.DirectFailures = append(c.DirectFailures, d)
			if ok && p.Outcome == Passed {
				c.Gained = append(c.Gained, d.Name)
			}
		}
	}
	return c
}

// Run is one runtime's comparison as the report shows it.
type Run struct {
	// Runtime names the runtime and its version, e.g. "containerd 1.6.20".
	Runtime    string
	Comparison Comparison
	// Retried lists regressions that passed when run again through criguard.
	Retried []string
}

// Meta describes what every run shares.
type Meta struct {
	Date, Critest, Command, Skipped string
}

// WriteMarkdown writes docs/CONFORMANCE.md: a table of pass counts per runtime, then
// each runtime's regressions and direct failures.
func WriteMarkdown(w io.Writer, m Meta, runs []Run) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# CRI conformance: direct vs through criguard\n\n")
	fmt.Fprintf(&b, "Written by `%s` (test/conformance/run.sh) on %s.\n\n", m.Command, m.Date)
	fmt.Fprintf(&b, "critest (%s) runs twice against each runtime, once on the runtime's socket and once\n", m.Critest)
	fmt.Fprintf(&b, "on criguard's in front of it; the run fails if any spec that passed directly does not\n")
	fmt.Fprintf(&b, "pass through criguard. Skipped on purpose: %s.\n\n", m.Skipped)
	fmt.Fprintf(&b, "Each direct run records its failures per runtime version in `test/conformance/baseline.json`.\n")
	fmt.Fprintf(&b, "CI (`CONFORMANCE_BASELINE=1`) runs critest through criguard first, and directly only when\n")
	fmt.Fprintf(&b, "a spec fails through criguard that the baseline does not list as failing directly.\n\n")
	fmt.Fprintf(&b, "| runtime | specs run | passed directly | passed through criguard | regressions |\n")
	fmt.Fprintf(&b, "| --- | --- | --- | --- | --- |\n")
	for _, r := range runs {
		c := r.Comparison
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", r.Runtime, c.Ran, c.DirectPassed, c.ProxiedPassed, len(c.Regressions))
	}
	for _, r := range runs {
		c := r.Comparison
		fmt.Fprintf(&b, "\n## %s\n", r.Runtime)
		if len(r.Retried) > 0 {
			fmt.Fprintf(&b, "\nFailed through criguard once, passed when run again: %s\n", strings.Join(r.Retried, "; "))
		}
		if len(c.Regressions) > 0 {
			fmt.Fprintf(&b, "\nRegressions through criguard:\n\n")
			for _, s := range c.Regressions {
				fmt.Fprintf(&b, "- %s: %s\n", s.Name, firstLine(s.Message))
			}
		}
		if len(c.DirectFailures) > 0 {
			fmt.Fprintf(&b, "\nFail directly (this machine and its local images, not criguard):\n\n")
			for _, s := range c.DirectFailures {
				fmt.Fprintf(&b, "- %s: %s\n", s.Name, firstLine(s.Message))
			}
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("conformance: write report: %w", err)
	}
	return nil
}

// firstLine shortens a failure message to its first line, at most 200 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(no message)"
	}
	return s
}

// Baseline holds, per runtime and version ("containerd 2.4.2+unknown"), the specs that
// failed directly on this machine kind in the last run that ran critest directly.
type Baseline map[string]BaselineEntry

// BaselineEntry is one runtime's direct failures and the day they were seen.
type BaselineEntry struct {
	Date         string   `json:"date"`
	FailDirectly []string `json:"fail_directly"`
}

// Unexplained returns the specs that did not pass through criguard and are not known
// to fail directly: only those need the direct run to tell criguard from the machine.
func (e BaselineEntry) Unexplained(proxied []Spec) []Spec {
	known := map[string]bool{}
	for _, name := range e.FailDirectly {
		known[name] = true
	}
	var out []Spec
	for _, s := range proxied {
		if s.Outcome == Failed && !known[s.Name] {
			out = append(out, s)
		}
	}
	return out
}

// Record replaces runtime's entry with the direct failures of c.
func (b Baseline) Record(runtime, date string, c Comparison) {
	names := make([]string, 0, len(c.DirectFailures))
	for _, s := range c.DirectFailures {
		names = append(names, s.Name)
	}
	b[runtime] = BaselineEntry{Date: date, FailDirectly: names}
}
