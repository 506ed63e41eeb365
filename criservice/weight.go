package criservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
	"github.com/criguard/criguard/translate"
)

// Weights divide a disk between siblings: the weight of a container-scope decision
// goes on the container's cgroup (it competes with the other containers of its pod),
// the weight of a pod-scope decision on the pod's cgroup (it competes with the pods
// beside it). criguard writes only per-device lines, records each one it wrote
// (WeightsFile) and never removes a line it did not write. A device whose scheduler
// ignores weights gets no line, and criguard says so: in the log once per device and
// scheduler, in explain for every cgroup.

// WeightsFile is the name of the record, under the state dir, of every weight line
// criguard wrote.
const WeightsFile = "weights.json"

// UnitWeights sets a systemd unit's device weights as runtime properties
// (cgroup.SystemdUnits): on a unit systemd owns the weight files and rewrites them
// on every daemon-reload, so there the weight goes through systemd.
type UnitWeights interface {
	SetDeviceWeights(ctx context.Context, unit string, weights []cgroup.IOWeight) error
}

// weightEnforcer brings a cgroup's weight lines to its plan.
type weightEnforcer struct {
	weights cgroup.Weights
	units   UnitWeights // nil: no systemd to talk to
	owned   *weightRecord
	dryRun  bool
	timeout time.Duration // bounds a call to systemd (--apply-timeout)
	log     *slog.Logger
	noted   sync.Map // support note (device, scheduler) → logged once
}

func newWeightEnforcer(opts Options) *weightEnforcer {
	sysRoot := ""
	if r, ok := opts.Devices.(cgroup.DeviceResolver); ok {
		sysRoot = r.SysRoot
	}
	path := ""
	if opts.StateDir != "" {
		path = filepath.Join(opts.StateDir, WeightsFile)
	}
	owned, err := openWeightRecord(path)
	if err != nil {
		// Fail safe, as for limits: every weight line then looks foreign and stays.
		opts.Logger.Error("weight record unreadable; weights criguard wrote before count as foreign and are kept", "err", err)
	}
	return &weightEnforcer{weights: cgroup.NewWeights(opts.IO, sysRoot), units: opts.UnitWeights,
		owned: owned, dryRun: opts.DryRun, timeout: opts.ApplyTimeout, log: opts.Logger}
}

// enforce brings the weight lines of plan.Dir to plan.Weights. On a systemd unit the
// change goes through systemd (runtime unit properties), which writes the files.
func (w *weightEnforcer) enforce(ctx context.Context, plan Plan, scope, id string) error {
	if plan.Dir == "" || plan.Decision.HandsOff {
		return nil
	}
	desired, unenforced := w.weights.Lines(plan.Weights)
	for _, s := range unenforced {
		// Once per device and scheduler, not per container: explain shows it per cgroup.
		if _, seen := w.noted.LoadOrStore(s.Note, true); !seen {
			w.log.Warn("weight not enforced on this device", scope, id, "dir", plan.Dir, "device", s.Device.String(), "why", s.Note)
		}
	}
	owned := w.owned.held(plan.Dir)
	if len(desired) == 0 && owned.IsZero() {
		return nil // nothing to write, nothing of criguard's to lift: no read
	}
	current, err := w.weights.Read(plan.Dir, w.weights.WeightFiles())
	if err != nil {
		return fmt.Errorf("read weights of %s: %w", plan.Dir, err)
	}
	change := translate.OwnedWeightChange(current, desired, owned)
	if len(change.Target) == 0 {
		if !w.dryRun {
			w.save(plan.Dir, change.Owned)
		}
		return nil
	}
	unit := systemdUnit(plan.Dir)
	viaSystemd := unit != "" && w.units != nil
	writes := w.weights.Writes(change.Target)
	if w.dryRun {
		w.log.Info("dry run: would set weights", scope, id, "dir", plan.Dir, "writes", writesAttr(writes), "systemd_unit", unit)
		return nil
	}
	w.save(plan.Dir, translate.UnionWeightOwnership(owned, change.Owned))
	if viaSystemd {
		err = w.units.SetDeviceWeights(ctx, unit, unitWeights(change.Target, plan.Weights))
	} else {
		err = cgroup.Apply(plan.Dir, writes)
	}
	if err != nil {
		return fmt.Errorf("set weights of %s: %w", plan.Dir, err)
	}
	w.save(plan.Dir, change.Owned)
	w.log.Info(scope+" weights set", scope, id, "dir", plan.Dir, "writes", writesAttr(writes), "systemd_unit", unit)
	return nil
}

// unitWeights are the weights to give systemd for the target lines, in io.weight
// units: the plan's where it wants one, the default where criguard lets go (systemd
// cannot drop one device's entry without dropping every other's).
func unitWeights(target []cgroup.WeightLine, wanted []cgroup.IOWeight) []cgroup.IOWeight {
	var out []cgroup.IOWeight
	for _, l := range target {
		weight := policy.DefaultWeight
		if i := slices.IndexFunc(wanted, func(w cgroup.IOWeight) bool { return w.Device == l.Device }); i >= 0 {
			weight = wanted[i].Weight
		}
		if !slices.ContainsFunc(out, func(w cgroup.IOWeight) bool { return w.Device == l.Device }) {
			out = append(out, cgroup.IOWeight{Device: l.Device, Weight: weight})
		}
	}
	return out
}

func (w *weightEnforcer) save(dir string, owned translate.WeightOwnership) {
	if err := w.owned.set(dir, owned); err != nil {
		w.log.Error("cannot save the record of criguard's weights; after a restart they will count as foreign", "dir", dir, "err", err)
	}
}

// applyWeights is the enforcer's call for every plan it applies: weights after limits.
func (e *enforcer) applyWeights(plan Plan, scope, id string) error {
	if e.weights == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(e.weights.timeout, time.Second))
	defer cancel()
	if err := e.weights.enforce(ctx, plan, scope, id); err != nil {
		return fmt.Errorf("%s %s: %w", scope, id, err)
	}
	return nil
}

// WeightState is one device's weight for explain: what the policy gives, where it
// goes, what is there now, whether the kernel enforces it, and whom it competes with.
type WeightState struct {
	Device   string `json:"device"`
	Weight   uint64 `json:"weight"`
	File     string `json:"file,omitempty"`
	Value    uint64 `json:"value,omitempty"` // in File's units
	Have     uint64 `json:"have,omitempty"`  // in force now, in File's units; 0: none
	Enforced bool   `json:"enforced"`
	Note     string `json:"note"`
	// Siblings is the set the weight competes in: the other children of the cgroup's parent.
	Siblings string `json:"siblings"`
	// Unit: the cgroup is a systemd unit; the weight goes through systemd (IODeviceWeight=).
	Unit string `json:"systemdUnit,omitempty"`
}

// explainWeights describes the plan's weights, device by device.
func (s *Reporter) explainWeights(ex *Explanation, plan Plan) {
	if s.enforcer.weights == nil || len(plan.Weights) == 0 {
		if plan.ContainerID != "" && plan.Decision.Scope == policy.ScopePod && plan.Decision.HasWeights() {
			ex.Notes = append(ex.Notes, "pod-scope weight: it is on the pod's cgroup, where the pod competes with its sibling pods")
		}
		return
	}
	ex.Weights = s.weightStates(plan)
}

// weightStates reads the plan's weights back, device by device (explain, status).
func (s *Reporter) weightStates(plan Plan) []WeightState {
	w := s.enforcer.weights
	if w == nil || len(plan.Weights) == 0 {
		return nil
	}
	var states []WeightState
	var current []cgroup.WeightLine
	if plan.Dir != "" {
		current, _ = w.weights.Read(plan.Dir, w.weights.WeightFiles())
	}
	siblings := siblingSet(plan.Dir)
	for _, pw := range plan.Weights {
		support := w.weights.Support(pw.Device)
		st := WeightState{Device: pw.Device.String(), Weight: pw.Weight, File: support.File, Enforced: support.Enforced,
			Note: support.Note, Siblings: siblings, Unit: systemdUnit(plan.Dir)}
		if support.Enforced {
			st.Value = cgroup.ScaleWeight(support.File, pw.Weight)
			for _, l := range current {
				if l.File == support.File && l.Device == pw.Device {
					st.Have = l.Value
				}
			}
		}
		states = append(states, st)
	}
	return states
}

// maxSiblingsNamed bounds the siblings explain names: a QoS slice holds every pod.
const maxSiblingsNamed = 6

// siblingSet names the cgroups a weight on dir competes with: its parent's other
// child directories.
func siblingSet(dir string) string {
	if dir == "" {
		return ""
	}
	parent := filepath.Dir(dir)
	entries, err := os.ReadDir(parent)
	if err != nil {
		return fmt.Sprintf("the children of %s (unreadable: %v)", parent, err)
	}
	var others []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != filepath.Base(dir) {
			others = append(others, e.Name())
		}
	}
	if len(others) == 0 {
		return fmt.Sprintf("the children of %s: none besides this one, so the weight decides nothing yet", parent)
	}
	named := others[:min(len(others), maxSiblingsNamed)]
	more := ""
	if len(others) > len(named) {
		more = fmt.Sprintf(" and %d more", len(others)-len(named))
	}
	return fmt.Sprintf("the children of %s: %d sibling(s) (%s%s)", parent, len(others), strings.Join(named, ", "), more)
}

// weightRecord is the persisted record of the weight lines criguard wrote, by cgroup
// directory, replaced atomically; without a path it lives in memory.
type weightRecord struct {
	path string
	mu   sync.Mutex
	dirs map[string]translate.WeightOwnership
}

type weightRecordFile struct {
	Version int                         `json:"version"`
	Dirs    map[string][]weightLineJSON `json:"dirs"`
}

type weightLineJSON struct {
	File     string `json:"file"`
	Device   string `json:"device"`
	Value    uint64 `json:"value"`
	Previous uint64 `json:"previous,omitempty"`
}

func openWeightRecord(path string) (*weightRecord, error) {
	r := &weightRecord{path: path, dirs: map[string]translate.WeightOwnership{}}
	if path == "" {
		return r, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("read weight record: %w", err)
	}
	var rec weightRecordFile
	if err := json.Unmarshal(b, &rec); err != nil {
		return r, fmt.Errorf("weight record %s: %w", path, err)
	}
	for dir, lines := range rec.Dirs {
		var o translate.WeightOwnership
		for _, l := range lines {
			dev, err := cgroup.ParseDevice(l.Device)
			if err != nil || l.Value == 0 {
				return &weightRecord{path: path, dirs: map[string]translate.WeightOwnership{}},
					fmt.Errorf("weight record %s: %s: bad line %+v", path, dir, l)
			}
			o.Lines = append(o.Lines, cgroup.WeightLine{File: l.File, Device: dev, Value: l.Value})
			if l.Previous != 0 {
				o.Previous = append(o.Previous, cgroup.WeightLine{File: l.File, Device: dev, Value: l.Previous})
			}
		}
		r.dirs[dir] = o
	}
	return r, nil
}

func (r *weightRecord) held(dir string) translate.WeightOwnership {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.dirs[dir]
	return translate.WeightOwnership{Lines: slices.Clone(o.Lines), Previous: slices.Clone(o.Previous)}
}

func (r *weightRecord) set(dir string, owned translate.WeightOwnership) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dirs[dir].Equal(owned) {
		return nil
	}
	if owned.IsZero() {
		delete(r.dirs, dir)
	} else {
		r.dirs[dir] = translate.WeightOwnership{Lines: slices.Clone(owned.Lines), Previous: slices.Clone(owned.Previous)}
	}
	if r.path == "" {
		return nil
	}
	rec := weightRecordFile{Version: 1, Dirs: map[string][]weightLineJSON{}}
	for d, o := range r.dirs {
		for _, l := range o.Lines {
			j := weightLineJSON{File: l.File, Device: l.Device.String(), Value: l.Value}
			for _, p := range o.Previous {
				if p.File == l.File && p.Device == l.Device {
					j.Previous = p.Value
				}
			}
			rec.Dirs[d] = append(rec.Dirs[d], j)
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return WriteFileAtomic(r.path, b)
}

// prune forgets the directories gone says no longer exist (their cgroups removed).
func (r *weightRecord) prune(gone func(dir string) bool) {
	r.mu.Lock()
	var dropped []string
	for dir := range r.dirs {
		if gone(dir) {
			dropped = append(dropped, dir)
		}
	}
	r.mu.Unlock()
	for _, dir := range dropped {
		_ = r.set(dir, translate.WeightOwnership{})
	}
}
