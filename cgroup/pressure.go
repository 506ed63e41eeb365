package cgroup

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const ioPressureFile = "io.pressure"

// Pressure is a cgroup's I/O pressure stall information (PSI): the share of
// time some (or all) of its tasks waited for I/O.
type Pressure struct {
	Some, Full PressureLine
}

// PressureLine is one line of a PSI file. The averages are percentages over
// 10, 60 and 300 s; Total is the stall time since the cgroup was created.
type PressureLine struct {
	Avg10, Avg60, Avg300 float64
	Total                time.Duration
}

// PressureReader is implemented by backends whose cgroups account I/O
// pressure: only v2 has io.pressure.
type PressureReader interface {
	Pressure(dir string) (Pressure, error)
}

// Pressure reads dir's io.pressure.
func (ioV2) Pressure(dir string) (Pressure, error) {
	content, err := ReadFile(dir, ioPressureFile)
	if err != nil {
		return Pressure{}, err
	}
	p, err := parsePressure(content)
	if err != nil {
		return Pressure{}, fmt.Errorf("%s: %w", filepath.Join(dir, ioPressureFile), err)
	}
	return p, nil
}

// parsePressure parses "some avg10=A avg60=B avg300=C total=MICROSECONDS" and
// the same for "full"; a kernel without "full" for a resource leaves it zero.
func parsePressure(content string) (Pressure, error) {
	var p Pressure
	for _, line := range strings.Split(content, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var target *PressureLine
		switch fields[0] {
		case "some":
			target = &p.Some
		case "full":
			target = &p.Full
		default:
			return Pressure{}, fmt.Errorf("%w: line %q: want some or full", ErrMalformed, line)
		}
		for _, pair := range fields[1:] {
			key, value, ok := strings.Cut(pair, "=")
			if !ok {
				return Pressure{}, fmt.Errorf("%w: line %q: %q is not key=value", ErrMalformed, line, pair)
			}
			if err := setPressureField(target, key, value); err != nil {
				return Pressure{}, fmt.Errorf("%w: line %q: %s: %w", ErrMalformed, line, key, err)
			}
		}
	}
	return p, nil
}

func setPressureField(l *PressureLine, key, value string) error {
	if key == "total" {
		us, err := strconv.ParseUint(value, 10, 63)
		if err != nil {
			return err
		}
		l.Total = time.Duration(us) * time.Microsecond
		return nil
	}
	var avg *float64
	switch key {
	case "avg10":
		avg = &l.Avg10
	case "avg60":
		avg = &l.Avg60
	case "avg300":
		avg = &l.Avg300
	default:
		return nil // a key a newer kernel adds
	}
	v, err := strconv.ParseFloat(value, 64)
	if err != nil {
		return err
	}
	*avg = v
	return nil
}
