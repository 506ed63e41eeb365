package cgroup

import (
	"context"
	"fmt"
	"sync"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// On a systemd unit (a kubelet pod slice, runc's container scope) systemd owns the
// weight files: on every daemon-reload it writes them again from the unit's
// properties. A weight that must last is a unit property, set at run time (it lands
// in /run/systemd/transient and survives daemon-reload, not a reboot, as the unit
// itself). systemd then writes io.weight and, on BFQ disks, io.bfq.weight itself.

// deviceWeight is one entry of systemd's IODeviceWeight= / BlockIODeviceWeight=
// (D-Bus signature a(st)): a device node and its weight.
type deviceWeight struct {
	Path   string
	Weight uint64
}

// DeviceWeightProperty is the runtime unit property that gives the devices their
// weights: IODeviceWeight= (io.weight units) on cgroup v2, BlockIODeviceWeight= (CFQ's
// 10–1000, systemd's own mapping) on v1. Devices are named /dev/block/MAJ:MIN, a node
// udev keeps for every block device, so systemd resolves the same disk criguard did.
func DeviceWeightProperty(version int, weights []IOWeight) sddbus.Property {
	name := "IODeviceWeight"
	if version == 1 {
		name = "BlockIODeviceWeight"
	}
	entries := make([]deviceWeight, 0, len(weights))
	for _, w := range weights {
		value := min(max(w.Weight, 1), weightMax)
		if version == 1 {
			value = ScaleWeight(blkioCFQWeightDevice, w.Weight)
		}
		entries = append(entries, deviceWeight{Path: "/dev/block/" + w.Device.String(), Weight: value})
	}
	return sddbus.Property{Name: name, Value: godbus.MakeVariant(entries)}
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
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	if err := conn.SetUnitPropertiesContext(ctx, unit, true, DeviceWeightProperty(s.Version, weights)); err != nil {
		if !conn.Connected() {
			s.drop(conn)
		}
		return fmt.Errorf("cgroup: systemd: set weights of %s: %w", unit, err)
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
