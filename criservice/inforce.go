package criservice

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/burst"
	"github.com/criguard/criguard/criservice/protect"
	"github.com/criguard/criguard/policy"
)

// The limit in force beside the class's: the burst loop raises a bursting key while
// credit lasts, the protection loop lowers a yielding key while a protected pod is
// under pressure. top shows both limits; explain and status say why they differ.

// EnableProtectionState makes plans take the protection loop's limits in force from
// the daemon's saved state, for explain, status and top, which run in their own
// process: the loop itself does not run.
func (s *Service) EnableProtectionState(st protect.State) error {
	r, err := protect.NewRunner(protect.RunnerOptions{Source: s, Enforcer: s, Pressure: s.ProtectPressure, Restored: st})
	if err != nil {
		return err
	}
	s.EnableProtection(r)
	return nil
}

// ioKeys names the four keys of a limit, for the notes.
var ioKeys = []struct {
	name  string
	bytes bool
	field func(*cgroup.IOLimit) *uint64
}{
	{"read_bps", true, func(l *cgroup.IOLimit) *uint64 { return &l.ReadBPS }},
	{"write_bps", true, func(l *cgroup.IOLimit) *uint64 { return &l.WriteBPS }},
	{"read_iops", false, func(l *cgroup.IOLimit) *uint64 { return &l.ReadIOPS }},
	{"write_iops", false, func(l *cgroup.IOLimit) *uint64 { return &l.WriteIOPS }},
}

// inForceNotes says, key by key, why the limit in force (read back from the cgroup)
// differs from the class's: the protection loop holds it down for a protected pod,
// or the burst loop holds it up while credit is left (from the daemon's state files).
func (s *Reporter) inForceNotes(p Plan, current []cgroup.IOLimit) []string {
	if p.ContainerID == "" || p.Decision.HandsOff {
		return nil
	}
	var credits []burst.Saved
	if s.stateDir != "" {
		credits, _ = burst.LoadState(filepath.Join(s.stateDir, burst.StateFile))
	}
	var protectState protect.State
	if s.stateDir != "" {
		protectState, _ = protect.LoadState(filepath.Join(s.stateDir, protect.StateFile))
	}
	var notes []string
	for _, have := range current {
		class, _ := limitOf(p.ClassLimits, have.Device)
		for _, k := range ioKeys {
			h, c := *k.field(&have), *k.field(&class)
			if h == c {
				continue
			}
			what := fmt.Sprintf("%s on %s: %s in force, the class gives %s", k.name, have.Device, formatKey(h, k.bytes), formatKey(c, k.bytes))
			if why := protectWhy(p, protectState, have.Device, k.name, h, c); why != "" {
				notes = append(notes, what+": "+why)
				continue
			}
			if why := burstWhy(p, credits, have.Device, k.name, h, c); why != "" {
				notes = append(notes, what+": "+why)
			}
		}
	}
	return notes
}

func protectWhy(p Plan, st protect.State, dev cgroup.Device, key string, have, class uint64) string {
	kind, ok := protect.ParseKind(key)
	if !ok || (class != 0 && have > class) || !p.Decision.Yields() {
		return ""
	}
	y, protecting, found := st.Find(p.ContainerID, dev, kind)
	if !found {
		return "the class yields here, and the protection loop holds no limit for it (not written yet, or another tool's)"
	}
	who := "a protected pod that was under pressure"
	if len(protecting) > 0 {
		who = "protecting " + strings.Join(protecting, ", ")
	}
	return fmt.Sprintf("yielding, %s (the loop holds %s)", who, formatKey(y.Limit, true))
}

func burstWhy(p Plan, credits []burst.Saved, dev cgroup.Device, key string, have, class uint64) string {
	if class == 0 || (have != 0 && have < class) {
		return ""
	}
	for _, c := range credits {
		if c.Key.Container == p.ContainerID && c.Key.Device == dev && burstKeyName(c.Key.Kind) == key {
			credit := uint64(max(c.Credit, 0))
			if strings.HasSuffix(key, "_bps") {
				return "bursting, credit left " + policy.FormatBytes(credit)
			}
			return fmt.Sprintf("bursting, credit left %d operations", credit)
		}
	}
	if hasBurst(p.Decision.IO) {
		return "the class bursts here; no credit saved for this container (the daemon's state dir?)"
	}
	return ""
}

func burstKeyName(k burst.Kind) string {
	switch k {
	case burst.ReadBPS:
		return "read_bps"
	case burst.WriteBPS:
		return "write_bps"
	case burst.ReadIOPS:
		return "read_iops"
	}
	return "write_iops"
}

func hasBurst(io []policy.IOLimits) bool {
	return slices.ContainsFunc(io, func(l policy.IOLimits) bool { return len(l.BurstKeys()) > 0 })
}

func formatKey(v uint64, bytes bool) string {
	switch {
	case v == 0:
		return "no limit"
	case bytes:
		return policy.FormatBytes(v) + "/s"
	}
	return fmt.Sprint(v) + " ops/s"
}
