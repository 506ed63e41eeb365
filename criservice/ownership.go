package criservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/internal/atomicfile"
	"github.com/criguard/criguard/translate"
)

// OwnershipFile is the name of the record, under the state dir, of every limit
// criguard wrote.
const OwnershipFile = "owned.json"

// ownership records, per cgroup directory, the limits criguard wrote there and what
// stood before it wrote them, so that reset and drift repair touch only those, never
// a limit another tool wrote, and letting go puts back what stood before. It survives
// restarts in a file replaced atomically; without a path it lives in memory.
type ownership struct {
	path string
	mu   sync.Mutex // guards dirs, handed and the file; no RPC is ever made under it
	dirs map[string]translate.Ownership
	// handed is, per cgroup directory, the values criguard's entries hold in the
	// directory's systemd unit, as last set there: after a hand-over that failed, the
	// unit still holds the older ones, which are criguard's, not an operator's.
	handed map[string][]cgroup.IOLimit
}

// ownershipVersion 2 adds "previous"; a version 1 record loads as "nothing stood
// before", and a version 1 reader ignores the field. "handed" came later, in version
// 2: a reader without it ignores it.
const ownershipVersion = 2

type ownershipRecord struct {
	Version int                      `json:"version"`
	Dirs    map[string][]ownedDevice `json:"dirs"`
	Handed  map[string][]ownedDevice `json:"handed,omitempty"`
}

type ownedDevice struct {
	Device string `json:"device"`
	ownedKeys
	// Previous is what stood before criguard wrote each of its keys (absent: none).
	Previous *ownedKeys `json:"previous,omitempty"`
}

type ownedKeys struct {
	ReadBPS   uint64 `json:"rbps,omitempty"`
	WriteBPS  uint64 `json:"wbps,omitempty"`
	ReadIOPS  uint64 `json:"riops,omitempty"`
	WriteIOPS uint64 `json:"wiops,omitempty"`
}

func keysOf(l cgroup.IOLimit) ownedKeys {
	return ownedKeys{ReadBPS: l.ReadBPS, WriteBPS: l.WriteBPS, ReadIOPS: l.ReadIOPS, WriteIOPS: l.WriteIOPS}
}

func (k ownedKeys) limit(d cgroup.Device) cgroup.IOLimit {
	return cgroup.IOLimit{Device: d, ReadBPS: k.ReadBPS, WriteBPS: k.WriteBPS, ReadIOPS: k.ReadIOPS, WriteIOPS: k.WriteIOPS}
}

// openOwnership loads the record at path. A missing file is an empty record. A file
// that cannot be read back is an error: the caller runs with an empty record, so the
// limits criguard wrote before count as foreign and are never lifted by mistake.
func openOwnership(path string) (*ownership, error) {
	o := &ownership{path: path, dirs: map[string]translate.Ownership{}, handed: map[string][]cgroup.IOLimit{}}
	if path == "" {
		return o, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return o, fmt.Errorf("read ownership record: %w", err)
	}
	var rec ownershipRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return o, fmt.Errorf("ownership record %s: %w", path, err)
	}
	dirs := make(map[string]translate.Ownership, len(rec.Dirs))
	for dir, devices := range rec.Dirs {
		var limits, previous []cgroup.IOLimit
		for _, d := range devices {
			dev, err := cgroup.ParseDevice(d.Device)
			if err != nil {
				return o, fmt.Errorf("ownership record %s: %s: %w", path, dir, err)
			}
			limits = append(limits, d.ownedKeys.limit(dev))
			if d.Previous != nil {
				previous = append(previous, d.Previous.limit(dev))
			}
		}
		if owned := translate.NewOwnership(limits, previous); !owned.IsZero() {
			dirs[dir] = owned
		}
	}
	handed := make(map[string][]cgroup.IOLimit, len(rec.Handed))
	for dir, devices := range rec.Handed {
		for _, d := range devices {
			dev, err := cgroup.ParseDevice(d.Device)
			if err != nil {
				return o, fmt.Errorf("ownership record %s: handed %s: %w", path, dir, err)
			}
			handed[dir] = append(handed[dir], d.ownedKeys.limit(dev))
		}
	}
	o.dirs, o.handed = dirs, handed
	return o, nil
}

// get returns the limits criguard owns in dir.
func (o *ownership) get(dir string) []cgroup.IOLimit {
	return o.held(dir).Limits
}

// held returns what criguard owns in dir and what stood before it wrote.
func (o *ownership) held(dir string) translate.Ownership {
	o.mu.Lock()
	defer o.mu.Unlock()
	return cloneOwnership(o.dirs[dir])
}

// set records what criguard owns in dir and saves the record if it changed.
func (o *ownership) set(dir string, owned translate.Ownership) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dirs[dir].Equal(owned) {
		return nil
	}
	if owned.IsZero() {
		delete(o.dirs, dir)
	} else {
		o.dirs[dir] = cloneOwnership(owned)
	}
	return o.saveLocked()
}

// handedIn returns the values criguard's entries hold in dir's systemd unit.
func (o *ownership) handedIn(dir string) []cgroup.IOLimit {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.handed[dir])
}

// recordHanded notes what systemd took into dir's unit (UnitLimitMax: the key
// lifted there) and saves the record if it changed.
func (o *ownership) recordHanded(dir string, given []cgroup.UnitIOLimit) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	was := o.handed[dir]
	now := slices.Clone(was)
	for _, g := range given {
		i := slices.IndexFunc(now, func(l cgroup.IOLimit) bool { return l.Device == g.Device })
		if i < 0 {
			now = append(now, cgroup.IOLimit{Device: g.Device})
			i = len(now) - 1
		}
		for _, p := range cgroup.UnitIOProperties {
			if p.V1 {
				continue // never handed
			}
			switch v := *p.Key(&g.IOLimit); v {
			case 0:
			case cgroup.UnitLimitMax:
				*p.Key(&now[i]) = 0
			default:
				*p.Key(&now[i]) = v
			}
		}
	}
	now = slices.DeleteFunc(now, cgroup.IOLimit.IsZero)
	if slices.Equal(was, now) {
		return nil
	}
	if len(now) == 0 {
		delete(o.handed, dir)
	} else {
		o.handed[dir] = now
	}
	return o.saveLocked()
}

func cloneOwnership(o translate.Ownership) translate.Ownership {
	return translate.Ownership{Limits: slices.Clone(o.Limits), Previous: slices.Clone(o.Previous)}
}

// prune forgets the directories gone says no longer exist (their cgroups removed).
func (o *ownership) prune(gone func(dir string) bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(o.dirs)
	maps.DeleteFunc(o.dirs, func(dir string, _ translate.Ownership) bool { return gone(dir) })
	h := len(o.handed)
	maps.DeleteFunc(o.handed, func(dir string, _ []cgroup.IOLimit) bool { return gone(dir) })
	if len(o.dirs) == n && len(o.handed) == h {
		return nil
	}
	return o.saveLocked()
}

// forget drops dir from the record once the cgroup is gone (RemoveContainer), rather
// than at the next pass: the record must not grow with a node's churn between passes.
func (o *ownership) forget(dir string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, owned := o.dirs[dir]
	_, handed := o.handed[dir]
	if !owned && !handed {
		return nil
	}
	delete(o.dirs, dir)
	delete(o.handed, dir)
	return o.saveLocked()
}

func (o *ownership) saveLocked() error {
	if o.path == "" {
		return nil
	}
	rec := ownershipRecord{Version: ownershipVersion, Dirs: make(map[string][]ownedDevice, len(o.dirs))}
	for dir, owned := range o.dirs {
		previous := map[cgroup.Device]ownedKeys{}
		for _, p := range owned.Previous {
			previous[p.Device] = keysOf(p)
		}
		for _, l := range owned.Limits {
			d := ownedDevice{Device: l.Device.String(), ownedKeys: keysOf(l)}
			if p, ok := previous[l.Device]; ok {
				d.Previous = &p
			}
			rec.Dirs[dir] = append(rec.Dirs[dir], d)
		}
	}
	if len(o.handed) > 0 {
		rec.Handed = make(map[string][]ownedDevice, len(o.handed))
		for dir, limits := range o.handed {
			for _, l := range limits {
				rec.Handed[dir] = append(rec.Handed[dir], ownedDevice{Device: l.Device.String(), ownedKeys: keysOf(l)})
			}
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return WriteFileAtomic(o.path, b)
}

// WriteFileAtomic replaces path with data (criguard's state files) so that a reader, a
// crash of criguard or a power cut sees the old content or the new one, never half of it.
func WriteFileAtomic(path string, data []byte) error {
	return atomicfile.Write(path, data)
}
