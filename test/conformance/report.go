// Package conformance runs the CRI validation suite (critest) against containerd
// directly and through criguard, and fails when a spec that passes directly fails
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

// Meta describes the run for the report.
type Meta struct {
	Date, Runtime, Critest, Command, Skipped string
	// Retried lists regressions that passed when run again through criguard.
	Retried []string
}

// WriteMarkdown writes docs/CONFORMANCE.md.
func WriteMarkdown(w io.Writer, c Comparison, m Meta) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# CRI conformance: direct vs through criguard\n\n")
	fmt.Fprintf(&b, "Written by `make conformance` (test/conformance/run.sh) on %s.\n\n", m.Date)
	fmt.Fprintf(&b, "critest runs twice against the same containerd, once on its socket and once on criguard's;\n")
	fmt.Fprintf(&b, "the run fails if any spec that passed directly does not pass through criguard.\n\n")
	fmt.Fprintf(&b, "| | specs passed |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| direct to containerd | %d of %d |\n", c.DirectPassed, c.Ran)
	fmt.Fprintf(&b, "| through criguard | %d of %d |\n", c.ProxiedPassed, c.Ran)
	fmt.Fprintf(&b, "| regressions through criguard | %d |\n\n", len(c.Regressions))
	fmt.Fprintf(&b, "- runtime: %s\n- critest: %s\n- skipped on purpose: %s\n- command: `%s`\n", m.Runtime, m.Critest, m.Skipped, m.Command)
	if len(m.Retried) > 0 {
		fmt.Fprintf(&b, "- failed through criguard once, passed when run again: %s\n", strings.Join(m.Retried, "; "))
	}
	if len(c.Regressions) > 0 {
		fmt.Fprintf(&b, "\n## Regressions\n\n")
		for _, s := range c.Regressions {
			fmt.Fprintf(&b, "- %s: %s\n", s.Name, firstLine(s.Message))
		}
	}
	if len(c.DirectFailures) > 0 {
		fmt.Fprintf(&b, "\n## Specs that fail directly (this machine, not criguard)\n\n")
		for _, s := range c.DirectFailures {
			fmt.Fprintf(&b, "- %s: %s\n", s.Name, firstLine(s.Message))
		}
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
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
