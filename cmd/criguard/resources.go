package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/policy"
)

// withResources adds a container's pids, memory and cpu settings to its I/O limits
// in a status column: what is wanted, or what the cgroup files hold.
func withResources(limits string, states []criservice.ResourceState, wanted bool) string {
	parts := []string{}
	if limits != "-" {
		parts = append(parts, limits)
	}
	for _, st := range states {
		value := st.Have
		if wanted {
			value = st.Want
		}
		if value == "" {
			value = "?"
		}
		parts = append(parts, st.File+"="+value)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// resourceLine is one explain line for a non-I/O setting.
func resourceLine(st criservice.ResourceState) string {
	line := fmt.Sprintf("%s wanted %s, in force %s", st.File, st.Want, orDash(st.Have))
	switch {
	case st.InSync && st.Note != "":
		line += " (in sync: " + st.Note + ")"
	case st.InSync:
		line += " (in sync)"
	case st.Note != "":
		line += " (" + st.Note + ")"
	default:
		line += " (NOT in sync)"
	}
	return line
}

// resourceChecker is what `check --host` asks of this machine for the pids, memory
// and cpu blocks: what it cannot enforce, and why.
type resourceChecker interface {
	ResourceSupport(r policy.Resources) ([]string, error)
}

func (h realHost) ResourceSupport(r policy.Resources) ([]string, error) {
	hierarchy, err := cgroup.DetectHost(h.resolver.ProcRoot)
	if err != nil {
		return nil, err
	}
	return criservice.ResourceSupport(r, hierarchy), nil
}

// checkResourcesOnHost refuses a class whose pids, memory or cpu throttles this host
// cannot enforce, with the reason: a throttle is never dropped silently.
func checkResourcesOnHost(path string, p *policy.Policy, host hostChecker, stderr io.Writer) bool {
	rc, ok := host.(resourceChecker)
	if !ok {
		return true
	}
	good := true
	for _, name := range slices.Sorted(maps.Keys(p.Classes)) {
		r := p.Classes[name].Resources
		if r.IsZero() {
			continue
		}
		problems, err := rc.ResourceSupport(r)
		if err != nil {
			fmt.Fprintf(stderr, "%s: class %q: cannot check this host's cgroup controllers: %v\n", path, name, err)
			good = false
			continue
		}
		for _, problem := range problems {
			fmt.Fprintf(stderr, "%s: class %q: this host cannot enforce %s\n", path, name, problem)
			good = false
		}
	}
	return good
}
