package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ioV2 is the cgroup v2 io backend: one io.max line per device.
type ioV2 struct{ mount string }

const (
	ioMaxFile          = "io.max"
	ioStatFile         = "io.stat"
	subtreeControlFile = "cgroup.subtree_control"
	ioUnlimited        = "max"
)

// ioMaxKeys is where v2 keys are serialized, and the only place.
var ioMaxKeys = []struct {
	key   string
	field func(*IOLimit) *uint64
}{
	{"rbps", func(l *IOLimit) *uint64 { return &l.ReadBPS }},
	{"wbps", func(l *IOLimit) *uint64 { return &l.WriteBPS }},
	{"riops", func(l *IOLimit) *uint64 { return &l.ReadIOPS }},
	{"wiops", func(l *IOLimit) *uint64 { return &l.WriteIOPS }},
}

func (ioV2) Version() int       { return 2 }
func (ioV2) Hierarchical() bool { return true }
func (i ioV2) Mount() string    { return i.mount }

// Writes writes one line per device with all four keys; zero is "max", so
// the line both sets and clears and is valid even when nothing is limited.
func (ioV2) Writes(limits []IOLimit) []Write {
	writes := make([]Write, 0, len(limits))
	for _, limit := range limits {
		writes = append(writes, Write{File: ioMaxFile, Value: ioMaxLine(limit)})
	}
	return writes
}

func (i ioV2) ResetWrites(devices []Device) []Write {
	return i.Writes(zeroLimits(devices))
}

func ioMaxLine(limit IOLimit) string {
	var b strings.Builder
	b.WriteString(limit.Device.String())
	for _, key := range ioMaxKeys {
		value := ioUnlimited
		if v := *key.field(&limit); v != 0 {
			value = strconv.FormatUint(v, 10)
		}
		b.WriteString(" " + key.key + "=" + value)
	}
	return b.String()
}

func (ioV2) Limits(dir string) ([]IOLimit, error) {
	content, err := ReadFile(dir, ioMaxFile)
	if err != nil {
		return nil, err
	}
	limits, err := ParseIOMax(content)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ioMaxFile), err)
	}
	return limits, nil
}

func (ioV2) Stats(dir string) ([]IOStat, error) {
	content, err := ReadFile(dir, ioStatFile)
	if err != nil {
		return nil, err
	}
	stats, err := parseIOStat(content)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ioStatFile), err)
	}
	return stats, nil
}

// Available checks that the parent of dir delegates "io": without it the
// kernel does not create io.max in dir. A dir that is gone is that (ENOENT), not
// a missing controller: its parent may well have stopped delegating io because
// dir, its only child, went.
func (i ioV2) Available(dir string) error {
	dir = filepath.Clean(dir)
	if dir == filepath.Clean(i.mount) {
		return fmt.Errorf("%w: %s is the root cgroup, which has no io.max", ErrIONotEnabled, dir)
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	parent := filepath.Dir(dir)
	content, err := ReadFile(parent, subtreeControlFile)
	if err != nil {
		return err
	}
	for _, controller := range strings.Fields(content) {
		if controller == "io" {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is %q", ErrIONotEnabled, filepath.Join(parent, subtreeControlFile), strings.TrimSpace(content))
}

// ParseIOMax parses io.max: "MAJ:MIN rbps=N|max wbps=... riops=... wiops=..."
// per device; "max" is no limit (0).
func ParseIOMax(content string) ([]IOLimit, error) {
	byDevice := map[Device]*IOLimit{}
	err := parseKeyedLines(content, func(d Device, key, value string) error {
		for _, k := range ioMaxKeys {
			if k.key != key {
				continue
			}
			if value == ioUnlimited {
				*k.field(limitFor(byDevice, d)) = 0
				return nil
			}
			v, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return err
			}
			*k.field(limitFor(byDevice, d)) = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sortedLimits(byDevice), nil
}

// parseIOStat parses io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N
// dbytes=N dios=N" per device, plus keys newer kernels add, which are ignored.
func parseIOStat(content string) ([]IOStat, error) {
	byDevice := map[Device]*IOStat{}
	err := parseKeyedLines(content, func(d Device, key, value string) error {
		s := byDevice[d]
		if s == nil {
			s = &IOStat{Device: d}
			byDevice[d] = s
		}
		var field *uint64
		switch key {
		case "rbytes":
			field = &s.ReadBytes
		case "wbytes":
			field = &s.WriteBytes
		case "rios":
			field = &s.ReadIOs
		case "wios":
			field = &s.WriteIOs
		default:
			return nil
		}
		v, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return err
		}
		*field = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sortedStats(byDevice), nil
}

// parseKeyedLines walks "MAJ:MIN key=value ..." lines, the shape of every
// v2 io file, and calls set for each pair.
func parseKeyedLines(content string, set func(d Device, key, value string) error) error {
	for _, line := range strings.Split(content, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		d, err := ParseDevice(fields[0])
		if err != nil {
			return fmt.Errorf("%w: line %q: %w", ErrMalformed, line, err)
		}
		for _, pair := range fields[1:] {
			key, value, ok := strings.Cut(pair, "=")
			if !ok {
				return fmt.Errorf("%w: line %q: %q is not key=value", ErrMalformed, line, pair)
			}
			if err := set(d, key, value); err != nil {
				return fmt.Errorf("%w: line %q: %s: %w", ErrMalformed, line, key, err)
			}
		}
	}
	return nil
}
