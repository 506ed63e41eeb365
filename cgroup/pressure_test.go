package cgroup

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestIOPressure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kubepods.slice", "cri-containerd-abc.scope")
	writeFake(t, dir, "io.pressure", "some avg10=4.35 avg60=5.70 avg300=12.13 total=154502336\nfull avg10=0.12 avg60=1.04 avg300=3.03 total=29755531\n")
	var backend IO = ioV2{mount: "/unused"}
	reader, ok := backend.(PressureReader)
	if !ok {
		t.Fatal("the v2 backend does not read pressure")
	}
	if _, ok := IO(blkioV1{}).(PressureReader); ok {
		t.Error("the v1 backend claims io.pressure, which v1 has not")
	}
	p, err := reader.Pressure(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Pressure{
		Some: PressureLine{Avg10: 4.35, Avg60: 5.70, Avg300: 12.13, Total: 154502336 * time.Microsecond},
		Full: PressureLine{Avg10: 0.12, Avg60: 1.04, Avg300: 3.03, Total: 29755531 * time.Microsecond},
	}
	if p != want {
		t.Errorf("Pressure = %+v, want %+v", p, want)
	}
	// Older kernels have no "full" line; newer ones may add keys.
	writeFake(t, dir, "io.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=7 extra=1\n")
	if p, err := reader.Pressure(dir); err != nil || p.Some.Total != 7*time.Microsecond || p.Full != (PressureLine{}) {
		t.Errorf("Pressure(some only) = %+v, %v", p, err)
	}
	for _, bad := range []string{"half avg10=1\n", "some avg10\n", "some total=-1\n", "full avg60=x\n"} {
		writeFake(t, dir, "io.pressure", bad)
		if _, err := reader.Pressure(dir); !errors.Is(err, ErrMalformed) {
			t.Errorf("Pressure(%q) error = %v, want ErrMalformed", bad, err)
		}
	}
	if _, err := reader.Pressure(filepath.Join(dir, "gone")); err == nil {
		t.Error("Pressure(missing cgroup) = nil error")
	}
}
