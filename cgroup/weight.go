package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Proportional weights. The policy gives a weight per device in cgroup v2 io.weight
// units (1–10000, default 100); which file takes it, and in which units, depends on
// the cgroup version and on the device's scheduler:
//
//	v2, scheduler bfq           io.bfq.weight            "MAJ:MIN W", W mapped to 1–1000
//	v2, io.cost on the device   io.weight                "MAJ:MIN W", W as given
//	v1, scheduler bfq           blkio.bfq.weight_device  "MAJ:MIN W", W mapped to 1–1000
//	v1, scheduler cfq (< 5.0)   blkio.weight_device      "MAJ:MIN W", W mapped to 10–1000
//
// Anywhere else (none, mq-deadline, kyber without io.cost) the kernel ignores weights:
// criguard writes nothing there and says so. The mappings are systemd's, so a weight
// means the same whether systemd or criguard writes it: BFQ keeps 1–100 as is and
// maps 100–10000 linearly onto 100–1000; CFQ takes 5×W, clamped to 10–1000 (its
// default is 500). Only per-device lines are written, never a cgroup's default line,
// so criguard's lines are told apart from anyone else's by device.

// Weight units and bounds of each file family.
const (
	weightDefault    = 100
	weightMax        = 10000
	bfqWeightMin     = 1
	bfqWeightDefault = 100
	bfqWeightMax     = 1000
	cfqWeightMin     = 10
	cfqWeightMax     = 1000

	ioWeightFile         = "io.weight"
	ioBFQWeightFile      = "io.bfq.weight"
	blkioBFQWeightDevice = "blkio.bfq.weight_device"
	blkioCFQWeightDevice = "blkio.weight_device"
	ioCostQoSFile        = "io.cost.qos"
	ioCostModelFile      = "io.cost.model"
)

// IOWeight is a device's weight in io.weight units (1–10000).
type IOWeight struct {
	Device Device
	Weight uint64
}

// WeightLine is one per-device line of a weight file, in that file's own units.
// Value 0 stands for "no line": the device falls back to the cgroup's default.
type WeightLine struct {
	File   string
	Device Device
	Value  uint64
}

// WeightSupport says whether the kernel enforces weights on a device, and where a
// weight for it is written.
type WeightSupport struct {
	Device Device
	// Scheduler is the device's active I/O scheduler ("" when sysfs has none).
	Scheduler string
	// IOCost: cgroup v2 io.cost is enabled on the device, with a cost model.
	IOCost bool
	// File takes the device's weight; "" when nothing would enforce it.
	File     string
	Enforced bool
	// Note is one sentence for explain, status and check --host.
	Note string
}

// Weights writes and reads per-device weights for one host. The cgroup version is
// fixed by the I/O backend it is made from; SysRoot replaces /sys in tests.
type Weights struct {
	version int
	mount   string
	sysRoot string
}

// NewWeights is the weight writer for the host of backend.
func NewWeights(backend IO, sysRoot string) Weights {
	return Weights{version: backend.Version(), mount: backend.Mount(), sysRoot: orDefault(sysRoot, "/sys")}
}

// Version is the cgroup version the weights are written for.
func (w Weights) Version() int { return w.version }

// Support reads the device's scheduler (and, on v2, io.cost at the root) and says
// whether and where its weight is enforced.
func (w Weights) Support(dev Device) WeightSupport {
	s := WeightSupport{Device: dev, Scheduler: w.scheduler(dev)}
	if w.version == 2 {
		s.IOCost = w.ioCostEnabled(dev)
	}
	switch {
	case s.Scheduler == "bfq" && w.version == 2:
		s.File, s.Enforced = ioBFQWeightFile, true
		s.Note = fmt.Sprintf("enforced: %s uses BFQ (io.bfq.weight, the weight mapped onto 1–1000)", dev)
	case s.Scheduler == "bfq":
		s.File, s.Enforced = blkioBFQWeightDevice, true
		s.Note = fmt.Sprintf("enforced: %s uses BFQ (blkio.bfq.weight_device, the weight mapped onto 1–1000)", dev)
	case s.IOCost:
		s.File, s.Enforced = ioWeightFile, true
		s.Note = fmt.Sprintf("enforced: io.cost is enabled on %s with a cost model (io.weight)", dev)
	case s.Scheduler == "cfq" && w.version == 1:
		s.File, s.Enforced = blkioCFQWeightDevice, true
		s.Note = fmt.Sprintf("enforced: %s uses CFQ (blkio.weight_device, 5× the weight within 10–1000)", dev)
	case w.version == 2:
		s.Note = fmt.Sprintf("not enforced: %s's scheduler %s ignores weights and io.cost is not enabled on it (%s at the root); nothing is written", dev, orUnknown(s.Scheduler), ioCostQoSFile)
	default:
		s.Note = fmt.Sprintf("not enforced: %s's scheduler %s ignores weights, and io.cost exists only on cgroup v2; nothing is written", dev, orUnknown(s.Scheduler))
	}
	return s
}

func orUnknown(scheduler string) string {
	if scheduler == "" {
		return "(none in sysfs)"
	}
	return scheduler
}

// scheduler is the bracketed entry of /sys/dev/block/MAJ:MIN/queue/scheduler.
func (w Weights) scheduler(dev Device) string {
	b, err := os.ReadFile(filepath.Join(w.sysRoot, "dev", "block", dev.String(), "queue", "scheduler"))
	if err != nil {
		return ""
	}
	return ParseScheduler(string(b))
}

// ParseScheduler returns the active scheduler of a queue/scheduler file:
// "[mq-deadline] kyber bfq none" is mq-deadline; a file with one word is that word.
func ParseScheduler(content string) string {
	fields := strings.Fields(content)
	for _, f := range fields {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	if len(fields) == 1 {
		return fields[0]
	}
	return ""
}

// ioCostEnabled reads the root's io.cost.qos and io.cost.model: enable=1 for the
// device, and a model line for it.
func (w Weights) ioCostEnabled(dev Device) bool {
	qos, err := ReadFile(w.mount, ioCostQoSFile)
	if err != nil {
		return false
	}
	model, err := ReadFile(w.mount, ioCostModelFile)
	if err != nil {
		return false
	}
	return ParseIOCost(qos, model, dev)
}

// ParseIOCost reports whether io.cost.qos enables dev (enable=1) and io.cost.model
// gives it a model.
func ParseIOCost(qos, model string, dev Device) bool {
	enabled := false
	_ = parseKeyedLines(qos, func(d Device, key, value string) error {
		if d == dev && key == "enable" {
			enabled = value == "1"
		}
		return nil
	})
	modelled := false
	_ = parseKeyedLines(model, func(d Device, key, value string) error {
		if d == dev && key == "model" && value != "" {
			modelled = true
		}
		return nil
	})
	return enabled && modelled
}

// Lines turns policy weights into the lines to write, per device in the file its
// scheduler reads. Devices that do not enforce weights get no line and are returned
// with their support, for the caller to report.
func (w Weights) Lines(weights []IOWeight) ([]WeightLine, []WeightSupport) {
	var lines []WeightLine
	var unenforced []WeightSupport
	for _, iw := range weights {
		s := w.Support(iw.Device)
		if !s.Enforced {
			unenforced = append(unenforced, s)
			continue
		}
		lines = append(lines, WeightLine{File: s.File, Device: iw.Device, Value: ScaleWeight(s.File, iw.Weight)})
	}
	slices.SortFunc(lines, compareWeightLines)
	return lines, unenforced
}

// ScaleWeight maps an io.weight value onto file's own range (systemd's mappings).
func ScaleWeight(file string, weight uint64) uint64 {
	weight = min(max(weight, 1), weightMax)
	switch file {
	case ioBFQWeightFile, blkioBFQWeightDevice:
		if weight <= weightDefault {
			return max(weight, bfqWeightMin) // 1–100: the same on both scales
		}
		return bfqWeightDefault + (weight-weightDefault)*(bfqWeightMax-bfqWeightDefault)/(weightMax-weightDefault)
	case blkioCFQWeightDevice:
		return min(max(weight*5, cfqWeightMin), cfqWeightMax)
	}
	return weight
}

// Writes serializes weight lines, the only place that does: "MAJ:MIN W", and for
// Value 0 the form that removes the device's line ("default"; 0 for CFQ).
func (Weights) Writes(lines []WeightLine) []Write {
	writes := make([]Write, 0, len(lines))
	for _, l := range lines {
		value := strconv.FormatUint(l.Value, 10)
		if l.Value == 0 && l.File != blkioCFQWeightDevice {
			value = "default"
		}
		writes = append(writes, Write{File: l.File, Value: l.Device.String() + " " + value})
	}
	return writes
}

// Read reads back the per-device lines of the weight files named in files, in each
// file's own units; the default line is not criguard's and is skipped. A file the
// kernel does not offer in dir reads as no lines.
func (w Weights) Read(dir string, files []string) ([]WeightLine, error) {
	var out []WeightLine
	for _, file := range slices.Compact(slices.Sorted(slices.Values(files))) {
		content, err := ReadFile(dir, file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		lines, err := parseWeightFile(file, content)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, file), err)
		}
		out = append(out, lines...)
	}
	slices.SortFunc(out, compareWeightLines)
	return out, nil
}

// parseWeightFile parses "default N" (skipped) and "MAJ:MIN N" lines.
func parseWeightFile(file, content string) ([]WeightLine, error) {
	var out []WeightLine
	err := parseDeviceLines(content, true, "W", func(d Device, v uint64) {
		out = append(out, WeightLine{File: file, Device: d, Value: v})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// WeightFiles are every file a weight may be written to on this host's version.
func (w Weights) WeightFiles() []string {
	if w.version == 2 {
		return []string{ioBFQWeightFile, ioWeightFile}
	}
	return []string{blkioBFQWeightDevice, blkioCFQWeightDevice}
}

func compareWeightLines(a, b WeightLine) int {
	if c := strings.Compare(a.File, b.File); c != 0 {
		return c
	}
	return a.Device.Compare(b.Device)
}
