package criservice

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice/resolve"
	"github.com/criguard/criguard/internal/atomicfile"
)

// Under the systemd driver a container's scope exists only once the runtime starts
// it: runc asks systemd for the scope with the init process in it. containerd and
// CRI-O write io.max from the create request criguard rewrote, but cri-dockerd
// drops it (Docker's API has no unified resources), so nothing of criguard's would
// be in the scope before the first instruction. systemd reads a unit's drop-ins when
// it loads the unit, a transient one included: a drop-in written before the start
// makes systemd put the limits into the scope as it makes it. Started removes it
// once criguard's own lines are there.
//
// Removing the file does not make systemd forget it: the unit keeps the settings in
// memory until the next daemon-reload, and an operator's `systemctl set-property` of
// the same key writes them into systemd's own drop-in, where they outlive the reload.
// So only a runtime that loses the create request's io.max gets one.

// dropInName marks criguard's drop-ins: the conflict check skips them, and start-up
// removes what a crash left.
const dropInName = "50-criguard-prestart.conf"

// dropInDir is where the runtime's transient units look for drop-ins.
const dropInDir = "/run/systemd/system"

// preStart writes and removes the drop-ins; disabled (the zero value) unless the node
// runs systemd on cgroup v2.
type preStart struct {
	enabled bool
	root    string // replaces / in tests
}

// path is the drop-in of unit.
func (p preStart) path(unit string) string {
	return filepath.Join(p.root, dropInDir, unit+".d", dropInName)
}

// unitFor is the scope a plan's limits would go to through a drop-in: a container's
// systemd scope the planner found still to be made.
func (p preStart) unitFor(plan Plan) string {
	if !p.enabled || !plan.ScopeToBe || len(plan.Limits) == 0 || plan.ContainerID == "" {
		return ""
	}
	if unit := systemdUnit(plan.Dir); strings.HasSuffix(unit, ".scope") {
		return unit
	}
	return ""
}

// runtimeKeepsUnified: containerd and CRI-O pass the create request's unified io.max
// to runc or crun, which write it into the scope before the first instruction.
func runtimeKeepsUnified(name string) bool {
	return resolve.RuntimeKind(name) == "containerd" || strings.EqualFold(name, "cri-o")
}

// releaseDropIn removes the drop-in a start left, once the start is over either way.
func (s *Service) releaseDropIn(st *Start) {
	if st == nil || st.dropIn == "" {
		return
	}
	if err := s.planner.preStart.remove(st.dropIn); err != nil {
		s.log.Warn("cannot remove the pre-start drop-in", "unit", st.dropIn, "err", err)
	}
}

// write puts plan's limits in the drop-in of unit.
func (p preStart) write(unit string, limits []cgroup.IOLimit) error {
	path := p.path(unit)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, unitIOProperties(limits))
}

// remove takes the drop-in of unit away, with its directory when that is empty.
func (p preStart) remove(unit string) error {
	path := p.path(unit)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	_ = os.Remove(filepath.Dir(path)) // fails while other drop-ins are there: kept
	return nil
}

// removeLeftovers removes the drop-ins a crash between a start's two halves left.
func (p preStart) removeLeftovers() (int, error) {
	paths, err := filepath.Glob(filepath.Join(p.root, dropInDir, "*.scope.d", dropInName))
	if err != nil {
		return 0, err
	}
	for _, path := range paths {
		if err := p.remove(strings.TrimSuffix(filepath.Base(filepath.Dir(path)), ".d")); err != nil {
			return 0, err
		}
	}
	return len(paths), nil
}

// unitIOProperties renders limits as a scope's systemd I/O properties; a device is
// named by its /dev/block node, which udev keeps for every block device.
func unitIOProperties(limits []cgroup.IOLimit) []byte {
	var b bytes.Buffer
	b.WriteString("# criguard: this container's limits, in place before its first instruction;\n")
	b.WriteString("# removed once the container started.\n[Scope]\n")
	for _, l := range limits {
		dev := fmt.Sprintf("/dev/block/%d:%d", l.Device.Major, l.Device.Minor)
		for _, k := range []struct {
			name  string
			value uint64
		}{
			{"IOReadBandwidthMax", l.ReadBPS},
			{"IOWriteBandwidthMax", l.WriteBPS},
			{"IOReadIOPSMax", l.ReadIOPS},
			{"IOWriteIOPSMax", l.WriteIOPS},
		} {
			if k.value != 0 {
				fmt.Fprintf(&b, "%s=%s %d\n", k.name, dev, k.value)
			}
		}
	}
	return b.Bytes()
}
