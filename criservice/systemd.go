package criservice

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/criguard/criguard/cgroup"
)

// systemd owns the cgroups of its units. A unit property on a disk
// (`systemctl set-property UNIT IOWriteBandwidthMax=/dev/vdb 2M`) replaces that
// device's io.max line, and systemd writes it again on every daemon-reload: writing
// criguard's value back would flap against it forever. So criguard leaves the keys a
// unit property sets to systemd, and says so: one log line, a metric, explain and
// status.

// unitIOKeys are systemd's I/O properties, the cgroup v2 ones and the v1 BlockIO*
// ones, and the key each sets.
var unitIOKeys = []struct {
	name  string
	field func(*cgroup.IOLimit) *uint64
}{
	{"IOReadBandwidthMax", func(l *cgroup.IOLimit) *uint64 { return &l.ReadBPS }},
	{"IOWriteBandwidthMax", func(l *cgroup.IOLimit) *uint64 { return &l.WriteBPS }},
	{"IOReadIOPSMax", func(l *cgroup.IOLimit) *uint64 { return &l.ReadIOPS }},
	{"IOWriteIOPSMax", func(l *cgroup.IOLimit) *uint64 { return &l.WriteIOPS }},
	{"BlockIOReadBandwidth", func(l *cgroup.IOLimit) *uint64 { return &l.ReadBPS }},
	{"BlockIOWriteBandwidth", func(l *cgroup.IOLimit) *uint64 { return &l.WriteBPS }},
}

// unitIOField is the key a unit property sets, if it is an I/O property.
func unitIOField(name string) (func(*cgroup.IOLimit) *uint64, bool) {
	for _, k := range unitIOKeys {
		if k.name == name {
			return k.field, true
		}
	}
	return nil, false
}

// unitConfigDirs are where a unit's properties live, in the order systemd reads
// them: set-property writes the *.control drop-ins, transient units (kubelet's pod
// slices, runc's scopes) live in /run/systemd/transient.
var unitConfigDirs = []string{
	"/run/systemd/transient",
	"/etc/systemd/system",
	"/run/systemd/system",
	"/etc/systemd/system.control",
	"/run/systemd/system.control",
}

// systemdUnit is the unit a cgroup directory belongs to, or "" when it is no unit.
func systemdUnit(dir string) string {
	base := filepath.Base(dir)
	if strings.HasSuffix(base, ".slice") || strings.HasSuffix(base, ".scope") {
		return base
	}
	return ""
}

// unitIOLimits reads the I/O limits the unit's own properties set, by device, and
// where each came from. root replaces / in tests.
func unitIOLimits(root, unit string, devices DeviceResolver) ([]cgroup.IOLimit, map[cgroup.Device]string, error) {
	byDevice := map[cgroup.Device]*cgroup.IOLimit{}
	from := map[cgroup.Device]string{}
	for _, dir := range unitConfigDirs {
		dir = filepath.Join(root, dir)
		files := []string{filepath.Join(dir, unit)}
		dropIns, _ := filepath.Glob(filepath.Join(dir, unit+".d", "*.conf"))
		files = append(files, dropIns...)
		for _, file := range files {
			if filepath.Base(file) == dropInName {
				continue // criguard's own, until the start it was written for ends
			}
			if err := readUnitIO(file, devices, byDevice, from); err != nil {
				return nil, nil, err
			}
		}
	}
	var out []cgroup.IOLimit
	for _, l := range byDevice {
		if !l.IsZero() {
			out = append(out, *l)
		}
	}
	return out, from, nil
}

func readUnitIO(file string, devices DeviceResolver, byDevice map[cgroup.Device]*cgroup.IOLimit, from map[cgroup.Device]string) error {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		name, value, ok := strings.Cut(strings.TrimSpace(scanner.Text()), "=")
		field, known := unitIOField(strings.TrimSpace(name))
		if !ok || !known {
			continue
		}
		value = strings.TrimSpace(value)
		if value == "" {
			// An empty assignment resets the list given so far.
			for _, l := range byDevice {
				*field(l) = 0
			}
			continue
		}
		// A device node, or a file on the disk's filesystem, as systemd takes it.
		path, _, _ := strings.Cut(value, " ")
		dev, err := devices.Resolve(path)
		if err != nil {
			continue // a device this node lacks binds nothing
		}
		l := byDevice[dev]
		if l == nil {
			l = &cgroup.IOLimit{Device: dev}
			byDevice[dev] = l
		}
		// The value itself is systemd's business; any non-zero marks the key as set.
		*field(l) = 1
		from[dev] = file
	}
	return scanner.Err()
}

// yieldToSystemd drops from limits the keys the dir's unit sets itself, and
// describes each conflict.
func yieldToSystemd(limits, unitSet []cgroup.IOLimit, unit string, from map[cgroup.Device]string) ([]cgroup.IOLimit, []string) {
	if len(unitSet) == 0 {
		return limits, nil
	}
	set := map[cgroup.Device]cgroup.IOLimit{}
	for _, l := range unitSet {
		set[l.Device] = l
	}
	var out []cgroup.IOLimit
	var conflicts []string
	for _, l := range limits {
		u, ok := set[l.Device]
		if !ok {
			out = append(out, l)
			continue
		}
		for _, k := range unitIOKeys {
			if *k.field(&u) != 0 && *k.field(&l) != 0 {
				*k.field(&l) = 0
				conflicts = append(conflicts, fmt.Sprintf("systemd unit %s sets %s on %s (%s): criguard leaves it to systemd, which rewrites it on every reload", unit, k.name, l.Device, from[l.Device]))
			}
		}
		if !l.IsZero() {
			out = append(out, l)
		}
	}
	return out, conflicts
}

// yieldToUnit takes out of the plan what the cgroup's own systemd unit sets, and
// reports each conflict once.
func (s *Service) yieldToUnit(plan *Plan) {
	unit := systemdUnit(plan.Dir)
	if unit == "" || len(plan.Limits) == 0 {
		return
	}
	set, from, err := unitIOLimits(s.opts.SystemdRoot, unit, s.opts.Devices)
	if err != nil {
		s.log.Debug("cannot read the unit's I/O properties", "unit", unit, "err", err)
		return
	}
	plan.Limits, plan.Conflicts = yieldToSystemd(plan.Limits, set, unit, from)
	for _, c := range plan.Conflicts {
		if _, seen := s.conflictsSeen.LoadOrStore(plan.Dir+"\x00"+c, true); !seen {
			s.log.Warn("limit conflicts with a systemd unit property", "dir", plan.Dir, "conflict", c)
			s.metrics.conflict("systemd")
		}
	}
}

// watchConflicts keeps the cgroups whose unit sets a key criguard yields for
// RecheckConflicted, and forgets the others.
func (s *Service) watchConflicts(plan Plan, reapply func(context.Context) error) {
	if plan.Dir == "" {
		return
	}
	if len(plan.Conflicts) == 0 {
		s.conflicted.Delete(plan.Dir)
		return
	}
	s.conflicted.Store(plan.Dir, reapply)
	select {
	case s.conflictRecorded <- struct{}{}:
	default:
	}
}

// RecheckConflicted applies again every cgroup whose own systemd unit sets an I/O key
// on a disk criguard also limits. systemd writes that device's whole io.max line (its
// key, "max" for the others) on every daemon-reload, erasing criguard's other keys:
// these few cgroups are checked every few seconds rather than at the next reconcile
// pass. An apply that finds the line intact writes nothing.
func (s *Service) RecheckConflicted(ctx context.Context) {
	s.conflicted.Range(func(dir, reapply any) bool {
		err := reapply.(func(context.Context) error)(ctx)
		if errors.Is(err, ErrUnknownContainer) || errors.Is(err, ErrTornDown) {
			s.conflicted.Delete(dir)
		}
		return ctx.Err() == nil
	})
}
