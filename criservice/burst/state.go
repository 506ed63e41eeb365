package burst

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"

	"github.com/criguard/criguard/cgroup"
)

// StateFile is the name, under the state dir, of the credit left in every bucket.
const StateFile = "burst.json"

// Saved is one bucket's credit left and its counter when it was saved: a restart
// charges what the counter grew by since, so the credit spent after the last save
// is never granted again.
type Saved struct {
	Key     Key
	Credit  float64
	Counter uint64
}

const stateVersion = 1

type stateRecord struct {
	Version int          `json:"version"`
	Buckets []savedEntry `json:"buckets"`
}

type savedEntry struct {
	Container string  `json:"container"`
	Device    string  `json:"device"`
	Kind      string  `json:"kind"`
	Credit    float64 `json:"credit"`
	Counter   uint64  `json:"counter"`
}

// ErrStateUnreadable wraps every reason a state file is not used.
var ErrStateUnreadable = errors.New("burst: state file unreadable")

// LoadState reads the credit left from path. A missing file is no credit at all;
// an unreadable one is an error, and the caller starts with no credit either:
// never more than was left.
func LoadState(path string) ([]Saved, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStateUnreadable, err)
	}
	return decodeState(b)
}

func decodeState(b []byte) ([]Saved, error) {
	var rec stateRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStateUnreadable, err)
	}
	if rec.Version != stateVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrStateUnreadable, rec.Version, stateVersion)
	}
	out := make([]Saved, 0, len(rec.Buckets))
	for _, e := range rec.Buckets {
		dev, err := cgroup.ParseDevice(e.Device)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStateUnreadable, err)
		}
		kind, ok := ParseKind(e.Kind)
		if !ok || e.Container == "" || math.IsNaN(e.Credit) || math.IsInf(e.Credit, 0) {
			return nil, fmt.Errorf("%w: bad entry %+v", ErrStateUnreadable, e)
		}
		out = append(out, Saved{Key: Key{Container: e.Container, Device: dev, Kind: kind}, Credit: e.Credit, Counter: e.Counter})
	}
	return out, nil
}

func encodeState(saved []Saved) ([]byte, error) {
	rec := stateRecord{Version: stateVersion, Buckets: make([]savedEntry, 0, len(saved))}
	for _, s := range saved {
		rec.Buckets = append(rec.Buckets, savedEntry{Container: s.Key.Container, Device: s.Key.Device.String(),
			Kind: s.Key.Kind.String(), Credit: math.Floor(s.Credit), Counter: s.Counter})
	}
	return json.MarshalIndent(rec, "", " ")
}
