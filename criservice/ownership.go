package criservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/internal/atomicfile"
)

// OwnershipFile is the name of the record, under the state dir, of every limit
// criguard wrote.
const OwnershipFile = "owned.json"

// ownership records, per cgroup directory, the limits criguard wrote there, so that
// reset and drift repair touch only those and never a limit another tool wrote. It
// survives restarts in a file replaced atomically; without a path it lives in memory.
type ownership struct {
	path string
	mu   sync.Mutex // guards dirs and the file; no RPC is ever made under it
	dirs map[string][]cgroup.IOLimit
}

type ownershipRecord struct {
	Version int                      `json:"version"`
	Dirs    map[string][]ownedDevice `json:"dirs"`
}

type ownedDevice struct {
	Device    string `json:"device"`
	ReadBPS   uint64 `json:"rbps,omitempty"`
	WriteBPS  uint64 `json:"wbps,omitempty"`
	ReadIOPS  uint64 `json:"riops,omitempty"`
	WriteIOPS uint64 `json:"wiops,omitempty"`
}

// openOwnership loads the record at path. A missing file is an empty record. A file
// that cannot be read back is an error: the caller runs with an empty record, so the
// limits criguard wrote before count as foreign and are never lifted by mistake.
func openOwnership(path string) (*ownership, error) {
	o := &ownership{path: path, dirs: map[string][]cgroup.IOLimit{}}
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
	for dir, devices := range rec.Dirs {
		for _, d := range devices {
			dev, err := cgroup.ParseDevice(d.Device)
			if err != nil {
				return o, fmt.Errorf("ownership record %s: %s: %w", path, dir, err)
			}
			o.dirs[dir] = append(o.dirs[dir], cgroup.IOLimit{Device: dev,
				ReadBPS: d.ReadBPS, WriteBPS: d.WriteBPS, ReadIOPS: d.ReadIOPS, WriteIOPS: d.WriteIOPS})
		}
	}
	return o, nil
}

// get returns what criguard owns in dir.
func (o *ownership) get(dir string) []cgroup.IOLimit {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.dirs[dir])
}

// set records what criguard owns in dir and saves the record if it changed.
func (o *ownership) set(dir string, owned []cgroup.IOLimit) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if slices.Equal(o.dirs[dir], owned) {
		return nil
	}
	if len(owned) == 0 {
		delete(o.dirs, dir)
	} else {
		o.dirs[dir] = slices.Clone(owned)
	}
	return o.saveLocked()
}

// prune forgets directories that no longer exist (their cgroups were removed).
func (o *ownership) prune() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(o.dirs)
	maps.DeleteFunc(o.dirs, func(dir string, _ []cgroup.IOLimit) bool {
		_, err := os.Stat(dir)
		return errors.Is(err, fs.ErrNotExist)
	})
	if len(o.dirs) == n {
		return nil
	}
	return o.saveLocked()
}

// all returns a copy of the whole record.
func (o *ownership) all() map[string][]cgroup.IOLimit {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string][]cgroup.IOLimit, len(o.dirs))
	for dir, limits := range o.dirs {
		out[dir] = slices.Clone(limits)
	}
	return out
}

func (o *ownership) saveLocked() error {
	if o.path == "" {
		return nil
	}
	rec := ownershipRecord{Version: 1, Dirs: make(map[string][]ownedDevice, len(o.dirs))}
	for dir, limits := range o.dirs {
		for _, l := range limits {
			rec.Dirs[dir] = append(rec.Dirs[dir], ownedDevice{Device: l.Device.String(),
				ReadBPS: l.ReadBPS, WriteBPS: l.WriteBPS, ReadIOPS: l.ReadIOPS, WriteIOPS: l.WriteIOPS})
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

// LoadOwnership reads the record under stateDir, for status and explain.
func LoadOwnership(stateDir string) (map[string][]cgroup.IOLimit, error) {
	o, err := openOwnership(filepath.Join(stateDir, OwnershipFile))
	return o.all(), err
}
