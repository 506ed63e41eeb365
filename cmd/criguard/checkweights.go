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

// weightChecker is what `check --host` asks of the host about weights; a
// hostChecker that is not one skips the weight report.
type weightChecker interface {
	// WeightSupport says whether the disk (MAJ:MIN) enforces weights, and where.
	WeightSupport(disk string) (cgroup.WeightSupport, error)
}

func (h realHost) WeightSupport(disk string) (cgroup.WeightSupport, error) {
	dev, err := cgroup.ParseDevice(disk)
	if err != nil {
		return cgroup.WeightSupport{}, err
	}
	hierarchy, err := cgroup.DetectHost(h.resolver.ProcRoot)
	if err != nil {
		return cgroup.WeightSupport{}, err
	}
	backend, err := hierarchy.IO()
	if err != nil {
		return cgroup.WeightSupport{}, err
	}
	return cgroup.NewWeights(backend, h.resolver.SysRoot).Support(dev), nil
}

// checkWeightsOnHost says, per device a class weights, whether this host enforces
// weights there. A weight the disk's scheduler ignores is a warning, not an error:
// one policy serves many nodes, and the operator may switch the scheduler to BFQ or
// enable io.cost. It is never left unsaid.
func checkWeightsOnHost(path string, p *policy.Policy, host hostChecker, stderr io.Writer) string {
	wc, ok := host.(weightChecker)
	if !ok {
		return ""
	}
	var parts []string
	seen := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(p.Classes)) {
		for _, l := range p.Classes[name].IO {
			if l.Weight == 0 || l.SelectsMounts() {
				continue
			}
			disk, err := host.ResolveDevice(l.Device)
			if err != nil {
				continue // reported with the devices
			}
			support, err := wc.WeightSupport(disk)
			if err != nil {
				fmt.Fprintf(stderr, "%s: class %q: cannot check weights on %s: %v\n", path, name, disk, err)
				continue
			}
			if !support.Enforced {
				fmt.Fprintf(stderr, "%s: warning: class %q: weight %d on %s: %s\n", path, name, l.Weight, l.Device, support.Note)
			}
			if !seen[disk] {
				seen[disk] = true
				state := "not enforced (" + orNone(support.Scheduler) + ")"
				if support.Enforced {
					state = "enforced (" + support.File + ")"
				}
				parts = append(parts, disk+" "+state)
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; weights " + strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "no scheduler"
	}
	return "scheduler " + s
}

// weightLine is one device's weight for explain: the value, where it goes, whether
// the kernel enforces it there, and the siblings it competes with.
func weightLine(w criservice.WeightState) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d on %s", w.Weight, w.Device)
	switch {
	case w.Unit != "" && w.Enforced:
		fmt.Fprintf(&b, " (systemd unit %s: IODeviceWeight=, which writes %s %d; in force %s)", w.Unit, w.File, w.Value, haveOrNone(w.Have))
	case w.Enforced:
		fmt.Fprintf(&b, " (%s %d; in force %s)", w.File, w.Value, haveOrNone(w.Have))
	}
	fmt.Fprintf(&b, "; %s; competes with %s", w.Note, w.Siblings)
	return b.String()
}

func haveOrNone(v uint64) string {
	if v == 0 {
		return "none"
	}
	return fmt.Sprint(v)
}
