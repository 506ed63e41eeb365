package cgroup

import (
	"context"
	"fmt"
	"math"
	"sync"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// On a systemd unit (a kubelet pod slice, runc's container scope) systemd owns the
// weight files: on every daemon-reload it writes them again from the unit's
// properties. A weight that must last is a unit property, set at run time (it lands
// in /run/systemd/transient and survives daemon-reload, not a reboot, as the unit
// itself). systemd then writes io.weight and, on BFQ disks, io.bfq.weight itself.

// deviceValue is one entry of systemd's per-device properties (D-Bus signature
// a(st)): a device node and its weight or limit.
type deviceValue struct {
	Path  string
	Value uint64
}

// devicePath names dev as criguard does in unit properties: a node udev keeps for
// every block device, so systemd resolves the same disk criguard did.
func devicePath(dev Device) string { return "/dev/block/" + dev.String() }

// UnitLimitMax is "no limit" in an I/O limit property (systemd's "infinity"): an
// entry set to it writes "max" and is dropped from the unit's drop-in.
const UnitLimitMax = math.MaxUint64

// DeviceWeightProperty is the runtime unit property that gives the devices their
// weights: IODeviceWeight= (io.weight units) on cgroup v2, BlockIODeviceWeight= (CFQ's
// 10–1000, systemd's own mapping) on v1. Devices are named /dev/block/MAJ:MIN, a node
// udev keeps for every block device, so systemd resolves the same disk criguard did.
func DeviceWeightProperty(version int, weights []IOWeight) sddbus.Property {
	name := "IODeviceWeight"
	if version == 1 {
		name = "BlockIODeviceWeight"
	}
	entries := make([]deviceValue, 0, len(weights))
	for _, w := range weights {
		value := min(max(w.Weight, 1), weightMax)
		if version == 1 {
			value = ScaleWeight(blkioCFQWeightDevice, w.Weight)
		}
		entries = append(entries, deviceValue{Path: devicePath(w.Device), Value: value})
	}
	return sddbus.Property{Name: name, Value: godbus.MakeVariant(entries)}
}

// UnitIOLimit is io.max keys for one entry of a unit's I/O properties. systemd keeps
// one entry per device path and writes each entry's whole line (its keys, "max" for
// the others): keys for a disk the unit already names must go into that entry, under
// the same Path, or a second spelling of the disk would write over the first.
type UnitIOLimit struct {
	Path string
	IOLimit
}

// UnitIOProperty is a systemd unit property that sets an I/O limit key.
type UnitIOProperty struct {
	Name string
	Key  func(*IOLimit) *uint64 // the key it sets
	V1   bool                   // a cgroup v1 BlockIO* property: read, never set
}

// UnitIOProperties are systemd's I/O limit properties, the cgroup v2 ones first.
var UnitIOProperties = []UnitIOProperty{
	{Name: "IOReadBandwidthMax", Key: func(l *IOLimit) *uint64 { return &l.ReadBPS }},
	{Name: "IOWriteBandwidthMax", Key: func(l *IOLimit) *uint64 { return &l.WriteBPS }},
	{Name: "IOReadIOPSMax", Key: func(l *IOLimit) *uint64 { return &l.ReadIOPS }},
	{Name: "IOWriteIOPSMax", Key: func(l *IOLimit) *uint64 { return &l.WriteIOPS }},
	{Name: "BlockIOReadBandwidth", Key: func(l *IOLimit) *uint64 { return &l.ReadBPS }, V1: true},
	{Name: "BlockIOWriteBandwidth", Key: func(l *IOLimit) *uint64 { return &l.WriteBPS }, V1: true},
}

// IOLimitProperties are the runtime unit properties that give systemd io.max keys
// (cgroup v2): IOReadBandwidthMax= and its three siblings, one entry per limit that
// sets the key (UnitLimitMax lifts it). systemd updates those entries and keeps its
// others; on every daemon-reload it writes them into io.max itself.
func IOLimitProperties(limits []UnitIOLimit) []sddbus.Property {
	var props []sddbus.Property
	for _, p := range UnitIOProperties {
		if p.V1 {
			continue
		}
		var entries []deviceValue
		for _, l := range limits {
			if v := *p.Key(&l.IOLimit); v != 0 {
				entries = append(entries, deviceValue{Path: l.Path, Value: v})
			}
		}
		// Never an empty list: it would reset every device's entry, the operator's too.
		if len(entries) > 0 {
			props = append(props, sddbus.Property{Name: p.Name, Value: godbus.MakeVariant(entries)})
		}
	}
	return props
}

// SystemdUnits sets unit properties through systemd's D-Bus API, connecting on first
// use and again after the connection breaks.
type SystemdUnits struct {
	Version int // the host's cgroup version

	mu   sync.Mutex
	conn *sddbus.Conn
}

// SetDeviceWeights sets the unit's device weights as runtime properties. systemd
// updates the entries for these devices and keeps its other entries.
func (s *SystemdUnits) SetDeviceWeights(ctx context.Context, unit string, weights []IOWeight) error {
	if len(weights) == 0 {
		return nil // an empty list would reset every device's weight, not only criguard's
	}
	return s.setRuntime(ctx, unit, "weights", DeviceWeightProperty(s.Version, weights))
}

// SetIOLimits hands io.max keys to systemd as the unit's runtime properties (cgroup
// v2 only: on v1 it does nothing).
func (s *SystemdUnits) SetIOLimits(ctx context.Context, unit string, limits []UnitIOLimit) error {
	props := IOLimitProperties(limits)
	if s.Version != 2 || len(props) == 0 {
		return nil
	}
	return s.setRuntime(ctx, unit, "I/O limits", props...)
}

// setRuntime sets the unit's runtime properties; what names them in the error.
func (s *SystemdUnits) setRuntime(ctx context.Context, unit, what string, props ...sddbus.Property) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	if err := conn.SetUnitPropertiesContext(ctx, unit, true, props...); err != nil {
		if !conn.Connected() {
			s.drop(conn)
		}
		return fmt.Errorf("cgroup: systemd: set %s of %s: %w", what, unit, err)
	}
	return nil
}

func (s *SystemdUnits) connect(ctx context.Context) (*sddbus.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Connected() {
		return s.conn, nil
	}
	conn, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("cgroup: systemd: connect to the system bus: %w", err)
	}
	s.conn = conn
	return conn, nil
}

func (s *SystemdUnits) drop(conn *sddbus.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == conn {
		s.conn.Close()
		s.conn = nil
	}
}

// Close closes the connection, if any.
func (s *SystemdUnits) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}
