package protect

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/criguard/criguard/cgroup"
)

// StateFile is the name, under the state dir, of the protection loop's limits in
// force: a restart starts each yielder where it was (never looser than the loop
// held it), and explain and top, which run in their own process, read why.
const StateFile = "protect.json"

// State is what the loop saves.
type State struct {
	Devices []DeviceState
}

// DeviceState is one device's yielders and whom they are held down for.
type DeviceState struct {
	Device     cgroup.Device
	Protecting []string // ns/pod
	Yielders   []YielderState
}

// YielderState is one yielding line's limit in force (and its ceiling, 0 if unknown).
type YielderState struct {
	Container      string
	Kind           Kind
	Limit, Ceiling uint64
}

// Find is the saved state of one line, if any, and its device's protected pods.
func (s State) Find(container string, dev cgroup.Device, kind Kind) (YielderState, []string, bool) {
	for _, d := range s.Devices {
		if d.Device != dev {
			continue
		}
		for _, y := range d.Yielders {
			if y.Container == container && y.Kind == kind {
				return y, d.Protecting, true
			}
		}
	}
	return YielderState{}, nil, false
}

const stateVersion = 1

type stateRecord struct {
	Version int           `json:"version"`
	Devices []deviceEntry `json:"devices"`
}

type deviceEntry struct {
	Device     string        `json:"device"`
	Protecting []string      `json:"protecting,omitempty"`
	Yielders   []yielderJSON `json:"yielders"`
}

type yielderJSON struct {
	Container string `json:"container"`
	Kind      string `json:"kind"`
	Limit     uint64 `json:"limit"`
	Ceiling   uint64 `json:"ceiling,omitempty"`
}

// ErrStateUnreadable wraps every reason a state file is not used.
var ErrStateUnreadable = errors.New("protect: state file unreadable")

// LoadState reads path. A missing file is an empty state; an unreadable one is an
// error, and the caller starts every yielder at its ceiling: the class's own cap,
// never looser.
func LoadState(path string) (State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("%w: %w", ErrStateUnreadable, err)
	}
	var rec stateRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return State{}, fmt.Errorf("%w: %w", ErrStateUnreadable, err)
	}
	if rec.Version != stateVersion {
		return State{}, fmt.Errorf("%w: version %d, want %d", ErrStateUnreadable, rec.Version, stateVersion)
	}
	var st State
	for _, d := range rec.Devices {
		dev, err := cgroup.ParseDevice(d.Device)
		if err != nil {
			return State{}, fmt.Errorf("%w: %w", ErrStateUnreadable, err)
		}
		ds := DeviceState{Device: dev, Protecting: d.Protecting}
		for _, y := range d.Yielders {
			kind, ok := ParseKind(y.Kind)
			if !ok || y.Container == "" || y.Limit == 0 {
				return State{}, fmt.Errorf("%w: bad entry %+v", ErrStateUnreadable, y)
			}
			ds.Yielders = append(ds.Yielders, YielderState{Container: y.Container, Kind: kind, Limit: y.Limit, Ceiling: y.Ceiling})
		}
		st.Devices = append(st.Devices, ds)
	}
	return st, nil
}

// encodeState is st as the state file holds it.
func encodeState(st State) ([]byte, error) {
	rec := stateRecord{Version: stateVersion, Devices: []deviceEntry{}}
	for _, d := range st.Devices {
		e := deviceEntry{Device: d.Device.String(), Protecting: d.Protecting, Yielders: []yielderJSON{}}
		for _, y := range d.Yielders {
			e.Yielders = append(e.Yielders, yielderJSON{Container: y.Container, Kind: y.Kind.String(), Limit: y.Limit, Ceiling: y.Ceiling})
		}
		rec.Devices = append(rec.Devices, e)
	}
	return json.MarshalIndent(rec, "", " ")
}
