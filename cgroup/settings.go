package cgroup

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
)

// Setting is one of a container's settings beyond I/O.
type Setting int

const (
	PidsMax Setting = iota
	CPUWeight
	CPUMax
	MemoryMax
	MemoryHigh
)

// String is the setting's v2 file name, the name the policy and explain use.
func (s Setting) String() string {
	switch s {
	case PidsMax:
		return "pids.max"
	case CPUWeight:
		return "cpu.weight"
	case CPUMax:
		return "cpu.max"
	case MemoryMax:
		return "memory.max"
	case MemoryHigh:
		return "memory.high"
	}
	return fmt.Sprintf("setting(%d)", int(s))
}

// Reading is a setting as a container's cgroup holds it.
type Reading struct {
	File string // as this host names it: cpu.shares holds the v1 weight
	Text string // the content, trimmed; v1 cpu.max is "quota/period" of two files
	// Value is in the file's units; Limited is false for "max" or unreadable text.
	Value   uint64
	Limited bool
	// Quota and Period are CPUMax's, in microseconds; Quota ≤ 0 is no limit.
	Quota, Period int64
}

// DirOf is a container's cgroup directory under one mount (v1 has one per controller).
type DirOf func(mount string) (string, error)

// Settings reads and writes a container's pids, cpu and memory files on one host.
// NewSettings picks the backend once, with the I/O backend's version.
type Settings interface {
	// RuntimeTakesUnified reports whether a runtime writes cgroup files from the
	// container's unified resources (v2); runc refuses them on v1.
	RuntimeTakesUnified() bool
	// HasSoftMemoryCeiling reports whether memory.high exists (v2 only).
	HasSoftMemoryCeiling() bool
	// CPUWeightValue is the file's value for a policy weight: v1 shares.
	CPUWeightValue(weight uint64) uint64
	// Read reads one setting of the container whose directories dirOf gives.
	Read(dirOf DirOf, s Setting) (Reading, error)
	// TightenPidsMax brings pids.max to at most n and reports whether it wrote;
	// makeDir first creates the cgroup (a cgroupfs path before the start).
	TightenPidsMax(dirOf DirOf, n uint64, makeDir bool) (bool, error)
	// Support says why s cannot be enforced on this host, or nil.
	Support(s Setting) error
}

// NewSettings is the settings backend of a host whose I/O backend is io, with its
// v1 controllers at controllers (nil: none mounted).
func NewSettings(io IO, controllers ControllerMounts) Settings {
	if io.Version() == 2 {
		return settingsV2{mount: io.Mount()}
	}
	return settingsV1{controllers: controllers}
}

type settingsV2 struct{ mount string }

func (settingsV2) RuntimeTakesUnified() bool             { return true }
func (settingsV2) HasSoftMemoryCeiling() bool            { return true }
func (settingsV2) CPUWeightValue(weight uint64) uint64   { return weight }
func (s settingsV2) dir(dirOf DirOf) (string, error)     { return dirOf(s.mount) }
func (s settingsV2) Support(setting Setting) error       { return s.controllerEnabled(controllerOf(setting)) }
func (s settingsV2) controllerEnabled(name string) error { return enabledIn(s.mount, name) }

func (s settingsV2) Read(dirOf DirOf, setting Setting) (Reading, error) {
	dir, err := s.dir(dirOf)
	if err != nil {
		return Reading{File: setting.String()}, err
	}
	r, err := readSetting(dir, setting.String())
	if err == nil && setting == CPUMax {
		quota, period, _ := strings.Cut(r.Text, " ")
		r.Quota, r.Period = parseCPU(quota, period)
	}
	return r, err
}

func (s settingsV2) TightenPidsMax(dirOf DirOf, n uint64, makeDir bool) (bool, error) {
	return tightenPids(s.mount, dirOf, n, makeDir)
}

type settingsV1 struct{ controllers ControllerMounts }

func (settingsV1) RuntimeTakesUnified() bool  { return false }
func (settingsV1) HasSoftMemoryCeiling() bool { return false }
func (settingsV1) CPUWeightValue(weight uint64) uint64 {
	return CPUSharesFromWeight(weight)
}

func (s settingsV1) mount(controller string) (string, error) {
	if s.controllers == nil {
		return "", fmt.Errorf("%w: %s", ErrControllerMissing, controller)
	}
	mount, ok := s.controllers.ControllerMount(controller)
	if !ok {
		return "", fmt.Errorf("%w: %s is not mounted", ErrControllerMissing, controller)
	}
	return mount, nil
}

func (s settingsV1) Support(setting Setting) error {
	if setting == MemoryHigh {
		return fmt.Errorf("%w: cgroup v1 has no soft memory ceiling (memory.high is v2 only)", ErrNotSupported)
	}
	controller := controllerOf(setting)
	if _, err := s.mount(controller); err != nil {
		return fmt.Errorf("the v1 %s controller is not mounted", controller)
	}
	return nil
}

func (s settingsV1) Read(dirOf DirOf, setting Setting) (Reading, error) {
	if setting == MemoryHigh {
		return Reading{File: setting.String()}, s.Support(setting)
	}
	mount, err := s.mount(controllerOf(setting))
	if err != nil {
		return Reading{File: setting.String()}, err
	}
	dir, err := dirOf(mount)
	if err != nil {
		return Reading{File: setting.String()}, err
	}
	switch setting {
	case CPUWeight:
		return readSetting(dir, "cpu.shares")
	case CPUMax:
		quota, err := readSetting(dir, "cpu.cfs_quota_us")
		if err != nil {
			return quota, err
		}
		period, _ := readSetting(dir, "cpu.cfs_period_us")
		r := Reading{File: quota.File, Text: quota.Text + "/" + period.Text}
		r.Quota, r.Period = parseCPU(quota.Text, period.Text)
		return r, nil
	case MemoryMax:
		return readSetting(dir, "memory.limit_in_bytes")
	}
	return readSetting(dir, setting.String())
}

func (s settingsV1) TightenPidsMax(dirOf DirOf, n uint64, makeDir bool) (bool, error) {
	mount, err := s.mount("pids")
	if err != nil {
		return false, err
	}
	return tightenPids(mount, dirOf, n, makeDir)
}

// controllerOf is the controller a setting belongs to.
func controllerOf(s Setting) string {
	name, _, _ := strings.Cut(s.String(), ".")
	return name
}

func readSetting(dir, file string) (Reading, error) {
	r := Reading{File: file}
	content, err := ReadFile(dir, file)
	if err != nil {
		return r, err
	}
	r.Text = strings.TrimSpace(content)
	r.Value, r.Limited = LimitValue(r.Text)
	return r, nil
}

func parseCPU(quota, period string) (int64, int64) {
	q, qErr := strconv.ParseInt(quota, 10, 64)
	p, pErr := strconv.ParseInt(period, 10, 64)
	if qErr != nil || pErr != nil {
		return -1, 0
	}
	return q, p
}

// tightenPids writes pids.max under mount, never above a value already there
// (kubelet's or another tool's).
func tightenPids(mount string, dirOf DirOf, n uint64, makeDir bool) (bool, error) {
	dir, err := dirOf(mount)
	if err == nil && makeDir {
		err = MakeDir(mount, dir)
	}
	if err == nil {
		err = CheckDir(mount, dir)
	}
	if err != nil {
		return false, fmt.Errorf("pids.max: %w", err)
	}
	if have, err := readSetting(dir, "pids.max"); err == nil && have.Limited && have.Value <= n {
		return false, nil
	}
	if err := WriteFile(dir, "pids.max", strconv.FormatUint(n, 10)); err != nil {
		return false, err
	}
	return true, nil
}

// enabledIn says whether controller is enabled on the cgroup2 mount.
func enabledIn(mount, controller string) error {
	content, err := ReadFile(mount, "cgroup.controllers")
	if err == nil && strings.Contains(" "+strings.Join(strings.Fields(content), " ")+" ", " "+controller+" ") {
		return nil
	}
	return fmt.Errorf("the %s controller is not enabled on the cgroup2 mount (cgroup.controllers)", controller)
}

// cpu.shares and cpu.weight bounds, as the kernel and runc have them.
const (
	cpuSharesMin = 2
	cpuSharesMax = 262144
	cpuWeightMin = 1
	cpuWeightMax = 10000
)

// CPUSharesFromWeight is the cpu.shares that means weight: the largest shares that
// runc's conversion turns into at most weight, so that a v1 host and a v2 host give
// the same share (weight 100 is 1024 shares). Both conversions are monotonic, and
// the linear one never gives more than the quadratic: these shares never land
// above weight, whichever runc converts them.
func CPUSharesFromWeight(weight uint64) uint64 {
	if weight == 0 {
		return 0
	}
	weight = min(max(weight, cpuWeightMin), cpuWeightMax)
	// The first shares whose weight is above the one wanted, less one.
	above := sort.Search(cpuSharesMax-cpuSharesMin+1, func(i int) bool {
		return cgroups.ConvertCPUSharesToCgroupV2Value(uint64(i+cpuSharesMin)) > weight
	})
	return uint64(max(above-1+cpuSharesMin, cpuSharesMin))
}
