package criservice

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/translate"
)

// enforcer brings cgroups to their plans: it is the one writer of I/O limits, and
// keeps the record of every line criguard wrote (ownership), so that it lifts and
// repairs only those. It takes plans, not CRI calls: any front end can drive it.
type enforcer struct {
	io cgroup.IO
	// watch is told around each write of limits, so that criguard's own write is
	// not taken for another's; nil: the limits are not watched.
	watch   *cgroup.LimitWatch
	owned   *ownership
	dryRun  bool
	log     *slog.Logger
	metrics *Metrics
	// specCarriesLimits: the runtime writes a container's io.max from the spec
	// criguard rewrote (v2), so a limit equal to the plan's may be criguard's.
	specCarriesLimits bool
	// weights brings the cgroup's weight lines to the plan (weight.go).
	weights *weightEnforcer
	// dirLocks serializes the writes to one cgroup (dir → *sync.Mutex): a reconcile
	// pass, a start and the burst and protection loops each read, decide and write.
	dirLocks sync.Map
	// refresh lays the loops' limits in force over a plan again, under its cgroup's
	// lock: the last writer writes the loops' latest decision, never an older one.
	refresh func(*Plan)
	// units takes what handover gives systemd after a write (systemd.go); nil: nothing.
	units       UnitLimits
	unitTimeout time.Duration
}

// lockDir takes dir's write lock and returns its release.
func (e *enforcer) lockDir(dir string) func() {
	m, _ := e.dirLocks.LoadOrStore(dir, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// forgetCgroup drops what the enforcer keeps of a cgroup that is gone (its container
// or pod removed): its write lock, its watch and its lines in the records of limits
// and weights.
// A cgroup the runtime has not removed yet is left to the next pass.
func (e *enforcer) forgetCgroup(dir string) {
	if dir == "" || !cgroupGoneAt(dir) {
		return
	}
	e.dirLocks.Delete(dir)
	if e.watch != nil {
		e.watch.Drop(dir)
	}
	if err := e.owned.forget(dir); err != nil {
		e.log.Error("cannot save the record of criguard's limits", "err", err)
	}
	if e.weights != nil {
		_ = e.weights.owned.set(dir, translate.WeightOwnership{})
	}
}

// cgroupGoneAt reports whether the cgroup directory dir no longer exists.
func cgroupGoneAt(dir string) bool {
	_, err := os.Stat(dir)
	return errors.Is(err, fs.ErrNotExist)
}

// prune drops what the enforcer keeps of cgroups gone behind criguard's back (a
// pass's work): their write locks, one per cgroup ever written, which would grow
// with every container a node starts, their lines in the records of limits and
// weights, and the watches on their limit files. Each directory is looked at once.
// A writer still holding a dropped lock works on a cgroup that is no more, and fails
// like any other.
func (e *enforcer) prune() error {
	looked := map[string]bool{}
	gone := func(dir string) bool {
		g, ok := looked[dir]
		if !ok {
			g = cgroupGoneAt(dir)
			looked[dir] = g
		}
		return g
	}
	e.dirLocks.Range(func(k, _ any) bool {
		if gone(k.(string)) {
			e.dirLocks.Delete(k)
		}
		return true
	})
	if e.weights != nil {
		e.weights.owned.prune(gone)
	}
	if e.watch != nil {
		e.watch.Forget(gone)
	}
	return e.owned.prune(gone)
}

// syncResult says what enforce did to one cgroup.
type syncResult string

const (
	resultUnchanged syncResult = "unchanged"
	resultApplied   syncResult = "applied"
	resultReset     syncResult = "reset"
	// In a dry run: what would have been done.
	resultWouldApply syncResult = "would_apply"
	resultWouldReset syncResult = "would_reset"
)

// enforce brings the cgroup at plan.Dir to plan.Limits, touching only what criguard
// owns: it reads what is there, writes only the difference, lifts its own limits the
// plan no longer wants, and leaves every other tool's limits as they are.
func (e *enforcer) enforce(plan Plan) (syncResult, []cgroup.Write, error) {
	if plan.Dir == "" || plan.Decision.HandsOff {
		return resultUnchanged, nil, nil
	}
	owned := e.owned.held(plan.Dir)
	if len(plan.Limits) == 0 && owned.IsZero() {
		// Nothing to write and nothing of criguard's to lift: the files need no read
		// (most pods' cgroups, on every pass).
		return resultUnchanged, nil, nil
	}
	current, err := e.io.Limits(plan.Dir)
	if err != nil {
		// On v2 io.max is missing when the parent does not delegate io: say that.
		if cause := e.io.Available(plan.Dir); cause != nil {
			return "", nil, cause
		}
		return "", nil, fmt.Errorf("read limits of %s: %w", plan.Dir, err)
	}
	change := translate.OwnedChange(current, plan.Limits, owned, e.inPlace(plan))
	if change.InSync() {
		if !e.dryRun {
			// Adopt limits already in place as wanted (written by the runtime from the
			// CreateContainer request, or before a restart).
			e.saveOwnership(plan.Dir, change.Owned)
		}
		return resultUnchanged, nil, nil
	}
	writes := e.io.Writes(change.Target)
	result := resultApplied
	if len(plan.Limits) == 0 {
		result = resultReset
	}
	if e.dryRun {
		e.log.Info("dry run: would write", "dir", plan.Dir, "writes", writesAttr(writes))
		if result == resultReset {
			return resultWouldReset, writes, nil
		}
		return resultWouldApply, writes, nil
	}
	// Record before writing, old and new together: a crash in between leaves
	// nothing of criguard's unowned, nor what stood before it forgotten.
	e.saveOwnership(plan.Dir, translate.UnionOwned(owned, change.Owned))
	if e.watch != nil {
		e.watch.Writing(plan.Dir)
		defer e.watch.Wrote(plan.Dir)
	}
	if err := cgroup.Apply(plan.Dir, writes); err != nil {
		return "", nil, err
	}
	e.saveOwnership(plan.Dir, change.Owned)
	return result, writes, nil
}

// inPlace says whose an unowned limit already equal to the plan's is: on cgroup v2
// a container's io.max may be criguard's own, written by the runtime from the
// CreateContainer request criguard rewrote; anywhere else only criguard's writes
// and other tools' reach the file.
func (e *enforcer) inPlace(plan Plan) translate.InPlace {
	if e.specCarriesLimits && plan.ContainerID != "" {
		return translate.InPlaceMaybeOurs
	}
	return translate.InPlaceForeign
}

func (e *enforcer) saveOwnership(dir string, owned translate.Ownership) {
	if err := e.owned.set(dir, owned); err != nil {
		e.log.Error("cannot save the record of criguard's limits; after a restart they will count as foreign", "dir", dir, "err", err)
	}
}

// pending is the writes still needed for the cgroup to hold what the plan wants,
// given what criguard owns; none when in sync.
func (e *enforcer) pending(plan Plan, current []cgroup.IOLimit) []cgroup.Write {
	if plan.Decision.HandsOff {
		return nil
	}
	change := translate.OwnedChange(current, plan.Limits, e.owned.held(plan.Dir), e.inPlace(plan))
	if change.InSync() {
		return nil
	}
	return e.io.Writes(change.Target)
}

func writesAttr(writes []cgroup.Write) []string {
	out := make([]string, len(writes))
	for i, w := range writes {
		out[i] = w.File + "=" + w.Value
	}
	return out
}

// apply enforces a plan and says so: the one path for containers and pods. Devices
// that did not resolve are an error after the others are written.
func (e *enforcer) apply(plan Plan, scope, id string) (Plan, syncResult, error) {
	if plan.Dir != "" {
		defer e.lockDir(plan.Dir)()
		if e.refresh != nil {
			e.refresh(&plan)
		}
	}
	result, writes, err := e.enforce(plan)
	if err != nil {
		return plan, "", fmt.Errorf("%s %s: %w", scope, id, err)
	}
	if result != resultUnchanged {
		e.log.Info(scope+" throttle "+string(result), scope, id, "pod", plan.Workload.Namespace+"/"+plan.Workload.PodName,
			"name", plan.Workload.ContainerName, "dir", plan.Dir, "why", plan.Decision.Reason, "writes", writesAttr(writes))
		e.metrics.throttle(string(result), scope)
	}
	if plan.unitEntries != nil && e.units != nil && !e.dryRun {
		// After refresh: the loops' latest limits, the ones just written.
		if give := handover(plan.Limits, plan.unitEntries); len(give) > 0 {
			e.handOver(plan.Dir, give, scope, id)
		}
	}
	weightErr := e.applyWeights(plan, scope, id)
	if plan.Unresolved != nil {
		return plan, result, errors.Join(fmt.Errorf("%s %s: %w", scope, id, plan.Unresolved), weightErr)
	}
	return plan, result, weightErr
}

// handOver gives the cgroup's systemd unit criguard's keys as properties (the io.max
// lines are written already). A failure leaves the 2 s recheck to repair what a
// daemon-reload erases, as before.
func (e *enforcer) handOver(dir string, give []cgroup.UnitIOLimit, scope, id string) {
	unit := systemdUnit(dir)
	ctx, cancel := context.WithTimeout(context.Background(), e.unitTimeout)
	defer cancel()
	if err := e.units.SetIOLimits(ctx, unit, give); err != nil {
		e.log.Warn("cannot hand criguard's limits to the systemd unit; a daemon-reload erases them until the next recheck", scope, id, "unit", unit, "err", err)
		return
	}
	e.log.Info(scope+" limits handed to systemd", scope, id, "unit", unit, "limits", fmt.Sprint(give))
	if err := e.owned.recordHanded(dir, give); err != nil {
		e.log.Warn("cannot save the ownership record", "dir", dir, "err", err)
	}
}
