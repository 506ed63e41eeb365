package criservice

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/criguard/criguard/cgroup"
)

// systemd owns the cgroups of its units. A unit property on a disk
// (`systemctl set-property UNIT IOWriteBandwidthMax=/dev/vdb 2M`) replaces that
// device's io.max line, and systemd writes it again on every daemon-reload: writing
// criguard's value back would flap against it forever. So criguard leaves the keys a
// unit property sets to systemd, and says so: one log line, a metric, explain and
// status.

// A daemon-reload makes systemd write such a device's whole io.max line again: its
// keys, and "max" for criguard's. So on those devices criguard hands its own keys to
// systemd as unit properties too (handover, after each write of the cgroup), into the
// entry the unit already has for the disk, and the reload writes them with the unit's.
// An entry's key whose value is the one criguard owns in the cgroup, or last handed to
// the unit, is criguard's, not the unit's: no conflict.

// UnitLimits sets io.max keys on a systemd unit as runtime properties
// (cgroup.SystemdUnits.SetIOLimits; cgroup.UnitLimitMax lifts a key).
type UnitLimits interface {
	SetIOLimits(ctx context.Context, unit string, limits []cgroup.UnitIOLimit) error
}

// unitIOField is the key a unit property sets, if it is an I/O property.
func unitIOField(name string) (func(*cgroup.IOLimit) *uint64, bool) {
	for _, p := range cgroup.UnitIOProperties {
		if p.Name == name {
			return p.Key, true
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
// where each came from; and apart, criguard's entries (ours says which). root
// replaces / in tests.
func unitIOLimits(root, unit string, devices DeviceResolver, ours ownEntry) (*unitReader, error) {
	r := &unitReader{devices: devices, ours: ours, set: map[cgroup.Device]*cgroup.IOLimit{}, handed: map[string]*cgroup.IOLimit{},
		from: map[cgroup.Device]map[string]string{}, paths: map[cgroup.Device]string{}, handedPaths: map[cgroup.Device]string{}}
	for _, dir := range unitConfigDirs {
		dir = filepath.Join(root, dir)
		files := []string{filepath.Join(dir, unit)}
		dropIns, _ := filepath.Glob(filepath.Join(dir, unit+".d", "*.conf"))
		files = append(files, dropIns...)
		for _, file := range files {
			if filepath.Base(file) == dropInName {
				continue // criguard's own, until the start it was written for ends
			}
			if err := r.read(file); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// ownEntry says whether a key of a unit's I/O entry is one criguard handed to systemd.
type ownEntry func(property string, dev cgroup.Device, value uint64) bool

// ownedEntries recognizes criguard's keys: the value criguard owns in the cgroup for
// that key on that disk, or the one it last handed to the unit (a hand-over after a
// change may have failed, leaving the older value in systemd).
func ownedEntries(owned, handed []cgroup.IOLimit) ownEntry {
	ours := slices.Concat(owned, handed)
	return func(property string, dev cgroup.Device, value uint64) bool {
		field, ok := handedField(property)
		if !ok || value == 0 {
			return false
		}
		for _, l := range ours {
			if l.Device == dev && *field(&l) == value {
				return true
			}
		}
		return false
	}
}

// unitReader reads a unit's I/O entries: the keys the unit sets itself (set, from
// which file, and the path its entry names each disk by) and criguard's (handed, by
// entry path; handedPaths: the last entry of criguard's for each disk).
type unitReader struct {
	devices     DeviceResolver
	ours        ownEntry
	set         map[cgroup.Device]*cgroup.IOLimit
	handed      map[string]*cgroup.IOLimit
	from        map[cgroup.Device]map[string]string // property name → file
	paths       map[cgroup.Device]string
	handedPaths map[cgroup.Device]string
}

func (r *unitReader) read(file string) error {
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
		name = strings.TrimSpace(name)
		field, known := unitIOField(name)
		if !ok || !known {
			continue
		}
		value = strings.TrimSpace(value)
		if value == "" {
			// An empty assignment resets the list given so far.
			for _, l := range r.set {
				*field(l) = 0
			}
			for _, l := range r.handed {
				*field(l) = 0
			}
			for _, names := range r.from {
				delete(names, name)
			}
			continue
		}
		// A device node, or a file on the disk's filesystem, as systemd takes it.
		path, number, _ := strings.Cut(value, " ")
		dev, err := r.devices.Resolve(path)
		if err != nil {
			continue // a device this node lacks binds nothing
		}
		limit := parseUnitLimit(strings.TrimSpace(number))
		if r.ours != nil && r.ours(name, dev, limit) {
			l := r.handed[path]
			if l == nil {
				l = &cgroup.IOLimit{Device: dev}
				r.handed[path] = l
			}
			*field(l) = limit
			r.handedPaths[dev] = path
			continue
		}
		r.paths[dev] = path
		// The value itself is systemd's business; any non-zero marks the key as set.
		*field(entry(r.set, dev)) = 1
		if r.from[dev] == nil {
			r.from[dev] = map[string]string{}
		}
		r.from[dev][name] = file
	}
	return scanner.Err()
}

// parseUnitLimit reads the value of an entry as systemd writes it, bytes or IOPS; 0
// for anything else (an operator's own spelling, "4M": not criguard's).
func parseUnitLimit(s string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func entry(m map[cgroup.Device]*cgroup.IOLimit, dev cgroup.Device) *cgroup.IOLimit {
	l := m[dev]
	if l == nil {
		l = &cgroup.IOLimit{Device: dev}
		m[dev] = l
	}
	return l
}

func nonZero(m map[cgroup.Device]*cgroup.IOLimit) []cgroup.IOLimit {
	var out []cgroup.IOLimit
	for _, l := range m {
		if !l.IsZero() {
			out = append(out, *l)
		}
	}
	slices.SortFunc(out, func(a, b cgroup.IOLimit) int { return a.Device.Compare(b.Device) })
	return out
}

// handedField is the key of a cgroup v2 property criguard hands to systemd.
func handedField(property string) (func(*cgroup.IOLimit) *uint64, bool) {
	if !strings.HasPrefix(property, "IO") {
		return nil, false // v1's BlockIO*: never handed
	}
	return unitIOField(property)
}

// handover is what to give systemd so that a daemon-reload writes criguard's keys too,
// per disk into one entry: the unit's own for that disk or, where the unit sets none
// (any more), the one criguard's keys are in. Into it go each of criguard's keys now
// (limits) that the entry does not hold at that value, and UnitLimitMax for a key of
// criguard's there that it no longer wants. Other entries are never touched: systemd
// writes each entry's whole line, and one of them is the operator's. Nothing when
// the entry holds them all.
func handover(limits []cgroup.IOLimit, r *unitReader) []cgroup.UnitIOLimit {
	devices := map[cgroup.Device]string{}
	maps.Copy(devices, r.handedPaths)
	maps.Copy(devices, r.paths) // the unit's own entry first
	var out []cgroup.UnitIOLimit
	for _, dev := range slices.SortedFunc(maps.Keys(devices), cgroup.Device.Compare) {
		path := devices[dev]
		want, have := cgroup.IOLimit{Device: dev}, cgroup.IOLimit{Device: dev}
		if i := slices.IndexFunc(limits, func(l cgroup.IOLimit) bool { return l.Device == dev }); i >= 0 {
			want = limits[i]
		}
		if h := r.handed[path]; h != nil && h.Device == dev {
			have = *h
		}
		give := cgroup.IOLimit{Device: dev}
		for _, p := range cgroup.UnitIOProperties {
			if p.V1 {
				continue
			}
			w, h := *p.Key(&want), *p.Key(&have)
			switch {
			case w != 0 && w != h:
				*p.Key(&give) = w
			case w == 0 && h != 0:
				*p.Key(&give) = cgroup.UnitLimitMax
			}
		}
		if !give.IsZero() {
			out = append(out, cgroup.UnitIOLimit{Path: path, IOLimit: give})
		}
	}
	return out
}

// handoverNotes say, per disk, whether systemd's entry holds criguard's keys, so that
// a daemon-reload keeps them.
func handoverNotes(plan Plan) []string {
	r := plan.unitEntries
	if r == nil {
		return nil
	}
	pending := handover(plan.Limits, r)
	var notes []string
	for _, dev := range slices.SortedFunc(maps.Keys(r.paths), cgroup.Device.Compare) {
		if slices.ContainsFunc(pending, func(l cgroup.UnitIOLimit) bool { return l.Device == dev }) {
			notes = append(notes, fmt.Sprintf("systemd unit %s: criguard's keys on %s are not in its entry %s yet; a daemon-reload writes \"max\" for them until the next recheck", systemdUnit(plan.Dir), dev, r.paths[dev]))
		} else {
			notes = append(notes, fmt.Sprintf("systemd unit %s: criguard's keys on %s are in its entry %s too, so a daemon-reload keeps them", systemdUnit(plan.Dir), dev, r.paths[dev]))
		}
	}
	return notes
}

// yieldToSystemd drops from limits the keys the dir's unit sets itself, and
// describes each conflict.
func yieldToSystemd(limits, unitSet []cgroup.IOLimit, unit string, from map[cgroup.Device]map[string]string) ([]cgroup.IOLimit, []string) {
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
		for _, p := range cgroup.UnitIOProperties {
			if *p.Key(&u) != 0 && *p.Key(&l) != 0 {
				*p.Key(&l) = 0
				name, file := setBy(from[l.Device], p)
				conflicts = append(conflicts, fmt.Sprintf("systemd unit %s sets %s on %s (%s): criguard leaves it to systemd, which rewrites it on every reload", unit, name, l.Device, file))
			}
		}
		if !l.IsZero() {
			out = append(out, l)
		}
	}
	return out, conflicts
}

// setBy is the property, of those that set p's key (v2's or v1's name), that the unit
// sets on a disk, and the file it is in.
func setBy(from map[string]string, p cgroup.UnitIOProperty) (name, file string) {
	var probe cgroup.IOLimit
	for _, q := range cgroup.UnitIOProperties {
		if f, ok := from[q.Name]; ok && q.Key(&probe) == p.Key(&probe) {
			return q.Name, f
		}
	}
	return p.Name, ""
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
	signal(s.conflictRecorded)
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
