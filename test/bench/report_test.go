//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// report collects the results as Markdown, section by section, so that a phase that
// fails still leaves the others' figures in results.md.
type report struct {
	setup, calls, starts, soak strings.Builder
	goals                      []goal
}

// goal is one target of the issues, met or not.
type goal struct {
	name, target, got string
	met               bool
}

func newReport() *report { return &report{} }

func (r *report) setupf(format string, args ...any) { fmt.Fprintf(&r.setup, format+"\n", args...) }

func (r *report) goal(name, target, got string, met bool) {
	r.goals = append(r.goals, goal{name: name, target: target, got: got, met: met})
}

func (r *report) write(t *testing.T, path string) {
	var b strings.Builder
	b.WriteString("## Setup\n\n")
	b.WriteString(r.setup.String())
	b.WriteString("\n## Goals\n\n| goal | target | measured | met |\n| --- | --- | --- | --- |\n")
	for _, g := range r.goals {
		met := "yes"
		if !g.met {
			met = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.name, g.target, g.got, met)
	}
	for _, s := range []struct {
		title string
		body  *strings.Builder
	}{
		{"1. Forwarding overhead (issue 2)", &r.calls},
		{"2. Apply and StartContainer latency (issue 5)", &r.starts},
		{"3. Soak (issue 6)", &r.soak},
	} {
		fmt.Fprintf(&b, "\n## %s\n\n", s.title)
		if s.body.Len() == 0 {
			b.WriteString("(not measured: the phase failed or did not run; see the test log)\n")
			continue
		}
		b.WriteString(s.body.String())
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Errorf("create %s: %v", filepath.Dir(path), err)
		return
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Errorf("write results %s: %v", path, err)
		return
	}
	t.Logf("results written to %s:\n%s", path, b.String())
}
