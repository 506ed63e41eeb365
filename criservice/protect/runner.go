package protect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/internal/atomicfile"
	"github.com/criguard/criguard/internal/tickloop"
)

// Kind is a key that yields: protection moves bandwidth, in bytes per second.
type Kind int

const (
	ReadBPS Kind = iota
	WriteBPS
)

func (k Kind) String() string {
	if k == ReadBPS {
		return "read_bps"
	}
	return "write_bps"
}

// ParseKind is String's inverse.
func ParseKind(s string) (Kind, bool) {
	switch s {
	case "read_bps":
		return ReadBPS, true
	case "write_bps":
		return WriteBPS, true
	}
	return 0, false
}

// Protected is a running container whose class protects it on Device: the loop reads
// its cgroup's io.pressure against Target. Who is its ns/pod, for logs and explain.
type Protected struct {
	Container, Dir, Who string
	Device              cgroup.Device
	Target              float64 // io.pressure some share, percent (the policy's pressure_some_avg10)
}

// YieldLine is one key of a running container that yields on Device, between Floor
// and Ceiling. Capped says Ceiling is the class's own cap; otherwise the key is
// uncapped at its ceiling (the operator's estimate of the disk's speed).
type YieldLine struct {
	Container, Who string
	Device         cgroup.Device
	Kind           Kind
	Floor, Ceiling uint64
	Capped         bool
}

// Key names one yielding line.
type Key struct {
	Container string
	Device    cgroup.Device
	Kind      Kind
}

func (l YieldLine) key() Key { return Key{Container: l.Container, Device: l.Device, Kind: l.Kind} }

// name is the line's name in its device's Controller.
func (k Key) name() string { return k.Container + "/" + k.Kind.String() }

// Source lists what protection acts on: the running containers that are protected,
// and the lines of those that yield.
type Source interface {
	ProtectTargets() ([]Protected, []YieldLine)
}

// Enforcer brings one container's cgroup to its plan with the limits in force the
// Runner gives: it writes only the lines criguard owns, and records them.
type Enforcer interface {
	EnforceInForce(ctx context.Context, container string) error
}

// PressureReader reads a cgroup's io.pressure (cgroup.PressureReader on v2).
type PressureReader func(dir string) (cgroup.Pressure, error)

const (
	// DefaultInterval is the loop's tick; the law's constants count ticks.
	DefaultInterval = time.Second
	// saveEvery ticks the state is saved even when no limit changed.
	saveEvery = 10
	// restoredGrace is how long limits restored for containers not seen yet are kept.
	restoredGrace = 5 * time.Minute
)

// RunnerOptions configure a Runner. Source, Enforcer and Pressure are required.
type RunnerOptions struct {
	Config   Config
	Source   Source
	Enforcer Enforcer
	Pressure PressureReader
	// StatePath is where the limits in force are saved; empty: not saved.
	StatePath string
	// Restored is the state a previous run saved (LoadState).
	Restored State
	Interval time.Duration
	Logger   *slog.Logger
	Metrics  *Metrics
	// Wake is signalled when a container is booked as protected or yielding
	// (criservice.Service.ProtectBooked). With it, a runner that has nothing to do
	// stops ticking until it is signalled: nothing protected or yielding, no limit
	// held or restored, nothing to retry, and the state on disk current. nil: it
	// ticks on.
	Wake <-chan struct{}
}

// Runner is the protection loop: each tick it reads the protected containers'
// io.pressure, steps one Controller per device that has yielders, and writes the
// yielders' limits that changed. The planner asks it for the limits in force
// (InForce), so that every write of a container's cgroup carries them.
type Runner struct {
	opts RunnerOptions
	log  *slog.Logger

	mu          sync.Mutex
	controllers map[cgroup.Device]*Controller
	protecting  map[cgroup.Device][]string // ns/pod above target at the last tightening
	restored    map[Key]uint64
	started     time.Time
	ticks       int
	pending     map[string]bool // containers to enforce: changed, or a write failed
	readErrors  map[string]bool // containers whose unreadable pressure was logged
	stalls      map[string][]stall
	targets     int              // protected containers and yielding lines at the last tick
	state       atomicfile.Saver // the limits in force, at StatePath
}

// stall is a protected container's io.pressure "some total" when read.
type stall struct {
	total time.Duration
	at    time.Time
}

// shareWindow is how many ticks back the pressure share is measured: long enough to
// smooth one tick's noise, short enough to see a step's effect within the cool-down.
const shareWindow = 3

// NewRunner returns a runner.
func NewRunner(opts RunnerOptions) (*Runner, error) {
	if opts.Source == nil || opts.Enforcer == nil || opts.Pressure == nil {
		return nil, errors.New("protect: Source, Enforcer and Pressure are required")
	}
	if opts.Config == (Config{}) {
		opts.Config = DefaultConfig
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{opts: opts, log: opts.Logger, state: atomicfile.Saver{Path: opts.StatePath}, controllers: map[cgroup.Device]*Controller{},
		protecting: map[cgroup.Device][]string{}, restored: map[Key]uint64{}, pending: map[string]bool{}, readErrors: map[string]bool{}, stalls: map[string][]stall{}}
	for _, d := range opts.Restored.Devices {
		r.protecting[d.Device] = d.Protecting
		for _, y := range d.Yielders {
			r.restored[Key{Container: y.Container, Device: d.Device, Kind: y.Kind}] = y.Limit
		}
	}
	return r, nil
}

// Validate checks the law's constants are in their ranges.
func (c Config) Validate() error {
	if c.Decrease <= 0 || c.Decrease >= 1 || c.Increase <= 0 || c.Increase > 1 || c.Band <= 0 || c.Band > 1 ||
		c.Cooldown < 1 || c.HoldDown < 1 || c.MaxHoldDown < c.HoldDown {
		return fmt.Errorf("protect: constants out of range: %+v", c)
	}
	return nil
}

// InForce is the limit in force of a yielding line: the controller's, or the one a
// previous run left (restored) until the first tick takes the line, or its ceiling.
// 0 means no limit: an uncapped key given all its bandwidth back.
func (r *Runner) InForce(l YieldLine) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	limit := l.Ceiling
	if c, ok := r.controllers[l.Device]; ok && c.has(l.key().name()) {
		limit = c.Limit(l.key().name())
	} else if restored, ok := r.restored[l.key()]; ok {
		limit = min(max(restored, min(l.Floor, l.Ceiling)), l.Ceiling)
	}
	if limit >= l.Ceiling && !l.Capped {
		return 0
	}
	return limit
}

// Protecting names the protected ns/pod whose pressure last tightened the device's
// yielders, while any of them is held below its ceiling.
func (r *Runner) Protecting(dev cgroup.Device) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.protecting[dev])
}

// Run ticks until ctx is done, then saves the limits in force. While nothing is
// protected or yields it sleeps until Wake.
func (r *Runner) Run(ctx context.Context) {
	tickloop.Run(ctx, tickloop.Loop{Interval: r.opts.Interval, Wake: r.opts.Wake, Tick: r.Tick, Idle: r.idle, Stop: func() { r.save() }})
}

// Tick is one pass of the loop.
func (r *Runner) Tick(ctx context.Context, now time.Time) {
	start := time.Now()
	protected, lines := r.opts.Source.ProtectTargets()
	samples := r.sample(protected, now)
	r.mu.Lock()
	r.targets = len(protected) + len(lines)
	if r.started.IsZero() {
		r.started = now
	}
	r.ticks++
	changed := r.step(samples, lines)
	if now.Sub(r.started) > restoredGrace {
		clear(r.restored)
	}
	r.mu.Unlock()
	r.enforcePending(ctx)
	if changed || r.ticks%saveEvery == 0 {
		r.save()
	}
	r.opts.Metrics.observe(len(lines), time.Since(start).Seconds())
}

// sample reads each protected container's pressure, by device.
func (r *Runner) sample(protected []Protected, now time.Time) map[cgroup.Device][]Pressure {
	out := map[cgroup.Device][]Pressure{}
	seen := map[string]bool{}
	for _, p := range protected {
		psi, err := r.opts.Pressure(p.Dir)
		if err != nil {
			// Gone: it is quiet. Unreadable: said once; it counts as quiet too, so a
			// broken file never holds the neighbours down for good.
			if !errors.Is(err, fs.ErrNotExist) && !r.readErrors[p.Container] {
				r.log.Warn("protection: cannot read the protected container's io.pressure; its neighbours are not tightened for it", "container", p.Container, "pod", p.Who, "dir", p.Dir, "err", err)
				r.readErrors[p.Container] = true
			}
			continue
		}
		delete(r.readErrors, p.Container)
		if !seen[p.Container] {
			seen[p.Container] = true
			r.stalls[p.Container] = r.recordStall(r.stalls[p.Container], stall{total: psi.Some.Total, at: now})
		}
		out[p.Device] = append(out[p.Device], Pressure{Name: p.Who, Share: share(r.stalls[p.Container], psi.Some.Avg10), Target: p.Target})
	}
	for id := range r.stalls {
		if !seen[id] {
			delete(r.stalls, id)
		}
	}
	return out
}

// recordStall appends s to the container's last readings, keeping shareWindow + 1.
// A total that went back (a new cgroup under the same name) starts them again.
func (r *Runner) recordStall(h []stall, s stall) []stall {
	if n := len(h); n > 0 && (s.total < h[n-1].total || !s.at.After(h[n-1].at)) {
		h = h[:0]
	}
	h = append(h, s)
	if len(h) > shareWindow+1 {
		h = append(h[:0], h[len(h)-shareWindow-1:]...)
	}
	return h
}

// share is the percent of wall time with some task stalled over the readings; with one
// reading, the kernel's avg10.
func share(h []stall, avg10 float64) float64 {
	if len(h) < 2 {
		return avg10
	}
	first, last := h[0], h[len(h)-1]
	return 100 * float64(last.total-first.total) / float64(last.at.Sub(first.at))
}

// step syncs each device's yielders and steps its controller; it reports whether
// any limit changed. Called with mu held.
func (r *Runner) step(samples map[cgroup.Device][]Pressure, lines []YieldLine) bool {
	byDevice := map[cgroup.Device][]Yielder{}
	who := map[string]string{}
	for _, l := range lines {
		name := l.key().name()
		byDevice[l.Device] = append(byDevice[l.Device], Yielder{Name: name, Floor: min(l.Floor, l.Ceiling), Ceiling: l.Ceiling})
		who[name] = l.Who
	}
	for dev := range r.controllers {
		if _, ok := byDevice[dev]; !ok {
			delete(r.controllers, dev) // no yielder left: nothing to hold
			delete(r.protecting, dev)
		}
	}
	changed := false
	for _, dev := range slices.SortedFunc(maps.Keys(byDevice), cgroup.Device.Compare) {
		ys := byDevice[dev]
		slices.SortFunc(ys, func(a, b Yielder) int { return strings.Compare(a.Name, b.Name) })
		c, ok := r.controllers[dev]
		if !ok {
			c = New(r.opts.Config, nil)
			r.controllers[dev] = c
		}
		changes := c.Sync(ys, func(name string) (uint64, bool) {
			container, kind, _ := strings.Cut(name, "/")
			k, _ := ParseKind(kind)
			key := Key{Container: container, Device: dev, Kind: k}
			v, ok := r.restored[key]
			delete(r.restored, key)
			return v, ok
		})
		step := c.Step(samples[dev])
		if hot := hotNames(samples[dev]); len(hot) > 0 && slices.ContainsFunc(step, func(ch Change) bool { return ch.Reason == "tighten" }) {
			r.protecting[dev] = hot
		}
		changes = append(changes, step...)
		if c.atCeilings() {
			delete(r.protecting, dev)
		}
		for _, ch := range changes {
			container, kind, _ := strings.Cut(ch.Name, "/")
			r.log.Info("protection: limit in force changed", "container", container, "pod", who[ch.Name], "device", dev.String(),
				"key", kind, "from", strconv.FormatUint(ch.From, 10), "to", strconv.FormatUint(ch.To, 10),
				"reason", ch.Reason, "protecting", strings.Join(r.protecting[dev], ","))
			r.opts.Metrics.changed(ch.Reason)
			r.pending[container] = true
			changed = true
		}
	}
	return changed
}

func hotNames(samples []Pressure) []string {
	var out []string
	for _, p := range samples {
		if p.Share > p.Target && !slices.Contains(out, p.Name) {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out
}

// enforcePending writes the containers whose limits changed; a failed write is
// retried on the next tick.
func (r *Runner) enforcePending(ctx context.Context) {
	r.mu.Lock()
	ids := slices.Sorted(maps.Keys(r.pending))
	clear(r.pending)
	r.mu.Unlock()
	for _, id := range ids {
		if err := r.opts.Enforcer.EnforceInForce(ctx, id); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // gone: its lines go at the next tick
			}
			r.log.Warn("protection: cannot write the limit in force; retried next tick", "container", id, "err", err)
			r.opts.Metrics.failed()
			r.mu.Lock()
			r.pending[id] = true
			r.mu.Unlock()
		}
	}
}

// idle reports whether the runner may sleep until Wake: nothing to read, hold,
// retry or save.
func (r *Runner) idle() bool {
	r.mu.Lock()
	busy := r.targets > 0 || len(r.controllers) > 0 || len(r.restored) > 0 || len(r.pending) > 0
	r.mu.Unlock()
	return !busy && r.save()
}

// save writes the limits in force, unless the file holds them already, and
// reports whether the file is current.
func (r *Runner) save() bool {
	if r.opts.StatePath == "" {
		return true
	}
	b, err := encodeState(r.Snapshot())
	if err == nil {
		err = r.state.Save(b)
	}
	if err != nil {
		r.log.Error("protection: cannot save the limits in force; a restart starts the yielders from what it finds saved before", "path", r.opts.StatePath, "err", err)
		return false
	}
	return true
}

// Snapshot is the state to save: every device's yielders below or at their ceiling,
// and whom they are held down for.
func (r *Runner) Snapshot() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	var st State
	for _, dev := range slices.SortedFunc(maps.Keys(r.controllers), cgroup.Device.Compare) {
		c := r.controllers[dev]
		d := DeviceState{Device: dev, Protecting: slices.Clone(r.protecting[dev])}
		for _, y := range c.yielders {
			container, kind, _ := strings.Cut(y.Name, "/")
			k, _ := ParseKind(kind)
			d.Yielders = append(d.Yielders, YielderState{Container: container, Kind: k, Limit: c.Limit(y.Name), Ceiling: y.Ceiling})
		}
		st.Devices = append(st.Devices, d)
	}
	// Restored limits not claimed yet are kept: the container may come back.
	for k, v := range r.restored {
		i := slices.IndexFunc(st.Devices, func(d DeviceState) bool { return d.Device == k.Device })
		if i < 0 {
			st.Devices = append(st.Devices, DeviceState{Device: k.Device, Protecting: slices.Clone(r.protecting[k.Device])})
			i = len(st.Devices) - 1
		}
		st.Devices[i].Yielders = append(st.Devices[i].Yielders, YielderState{Container: k.Container, Kind: k.Kind, Limit: v})
	}
	return st
}
