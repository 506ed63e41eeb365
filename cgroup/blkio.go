package cgroup

import (
	"fmt"
	"strconv"
	"strings"
)

// blkioV1 is the cgroup v1 blkio backend: one throttle file per key, each
// holding "MAJ:MIN N" lines; writing N = 0 removes the device's rule.
type blkioV1 struct{ mount string }

// blkioThrottleKeys is where v1 keys are serialized, and the only place.
var blkioThrottleKeys = []struct {
	file  string
	field func(*IOLimit) *uint64
}{
	{"blkio.throttle.read_bps_device", func(l *IOLimit) *uint64 { return &l.ReadBPS }},
	{"blkio.throttle.write_bps_device", func(l *IOLimit) *uint64 { return &l.WriteBPS }},
	{"blkio.throttle.read_iops_device", func(l *IOLimit) *uint64 { return &l.ReadIOPS }},
	{"blkio.throttle.write_iops_device", func(l *IOLimit) *uint64 { return &l.WriteIOPS }},
}

const (
	blkioServiceBytes = "blkio.throttle.io_service_bytes"
	blkioServiced     = "blkio.throttle.io_serviced"
)

func (blkioV1) Version() int       { return 1 }
func (blkioV1) Hierarchical() bool { return false }
func (b blkioV1) Mount() string    { return b.mount }

// Writes writes all four keys for every device, zero included, so a key
// dropped from the policy is cleared rather than left at its old value.
func (blkioV1) Writes(limits []IOLimit) []Write {
	writes := make([]Write, 0, len(limits)*len(blkioThrottleKeys))
	for _, limit := range limits {
		for _, key := range blkioThrottleKeys {
			value := *key.field(&limit)
			writes = append(writes, Write{File: key.file, Value: limit.Device.String() + " " + strconv.FormatUint(value, 10)})
		}
	}
	return writes
}

func (b blkioV1) ResetWrites(devices []Device) []Write {
	return b.Writes(zeroLimits(devices))
}

func (blkioV1) Limits(dir string) ([]IOLimit, error) {
	byDevice := map[Device]*IOLimit{}
	for _, key := range blkioThrottleKeys {
		content, err := ReadFile(dir, key.file)
		if err != nil {
			return nil, err
		}
		values, err := parseBlkioThrottle(content)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", dir, key.file, err)
		}
		for d, v := range values {
			limit := limitFor(byDevice, d)
			*key.field(limit) = v
		}
	}
	return sortedLimits(byDevice), nil
}

func (blkioV1) Stats(dir string) ([]IOStat, error) {
	byDevice := map[Device]*IOStat{}
	for _, stat := range []struct {
		file        string
		read, write func(*IOStat) *uint64
	}{
		{blkioServiceBytes, func(s *IOStat) *uint64 { return &s.ReadBytes }, func(s *IOStat) *uint64 { return &s.WriteBytes }},
		{blkioServiced, func(s *IOStat) *uint64 { return &s.ReadIOs }, func(s *IOStat) *uint64 { return &s.WriteIOs }},
	} {
		content, err := ReadFile(dir, stat.file)
		if err != nil {
			return nil, err
		}
		readWrite, err := parseBlkioStat(content)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", dir, stat.file, err)
		}
		for d, rw := range readWrite {
			s := byDevice[d]
			if s == nil {
				s = &IOStat{Device: d}
				byDevice[d] = s
			}
			*stat.read(s), *stat.write(s) = rw[0], rw[1]
		}
	}
	return sortedStats(byDevice), nil
}

// Available is always nil: v1 blkio needs no delegation.
func (blkioV1) Available(string) error { return nil }

// parseBlkioThrottle parses a blkio.throttle.*_device file ("MAJ:MIN N" lines).
func parseBlkioThrottle(content string) (map[Device]uint64, error) {
	values := map[Device]uint64{}
	err := parseDeviceLines(content, false, "N", func(d Device, v uint64) { values[d] = v })
	if err != nil {
		return nil, err
	}
	return values, nil
}

// parseDeviceLines reads the "MAJ:MIN N" lines of a per-device cgroup file, one
// call of add each; skipDefault skips a weight file's "default N" line. want names
// the value in the error ("N", "W").
func parseDeviceLines(content string, skipDefault bool, want string, add func(Device, uint64)) error {
	for _, line := range strings.Split(content, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || (skipDefault && fields[0] == "default") {
			continue
		}
		if len(fields) != 2 {
			return fmt.Errorf("%w: line %q: want \"MAJ:MIN %s\"", ErrMalformed, line, want)
		}
		d, err := ParseDevice(fields[0])
		if err != nil {
			return fmt.Errorf("%w: line %q: %w", ErrMalformed, line, err)
		}
		v, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			return fmt.Errorf("%w: line %q: %w", ErrMalformed, line, err)
		}
		add(d, v)
	}
	return nil
}

// parseBlkioStat parses blkio.throttle.io_service_bytes / io_serviced:
// "MAJ:MIN OP N" lines for Read, Write, Sync, Async, Discard, Total, and a
// final "Total N". It returns [read, write] per device.
func parseBlkioStat(content string) (map[Device][2]uint64, error) {
	values := map[Device][2]uint64{}
	for _, line := range strings.Split(content, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || (len(fields) == 2 && fields[0] == "Total") {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("%w: line %q: want \"MAJ:MIN OP N\"", ErrMalformed, line)
		}
		d, err := ParseDevice(fields[0])
		if err != nil {
			return nil, fmt.Errorf("%w: line %q: %w", ErrMalformed, line, err)
		}
		v, err := strconv.ParseUint(fields[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: line %q: %w", ErrMalformed, line, err)
		}
		rw := values[d]
		switch fields[1] {
		case "Read":
			rw[0] = v
		case "Write":
			rw[1] = v
		}
		values[d] = rw
	}
	return values, nil
}

func limitFor(byDevice map[Device]*IOLimit, d Device) *IOLimit {
	limit := byDevice[d]
	if limit == nil {
		limit = &IOLimit{Device: d}
		byDevice[d] = limit
	}
	return limit
}

func zeroLimits(devices []Device) []IOLimit {
	limits := make([]IOLimit, len(devices))
	for i, d := range devices {
		limits[i] = IOLimit{Device: d}
	}
	return limits
}
