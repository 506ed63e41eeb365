package cgroup

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeSchedulers writes /sys/dev/block/MAJ:MIN/queue/scheduler for each device.
func fakeSchedulers(t *testing.T, schedulers map[Device]string) string {
	t.Helper()
	root := t.TempDir()
	for d, s := range schedulers {
		writeFake(t, filepath.Join(root, "dev", "block", d.String(), "queue"), "scheduler", s+"\n")
	}
	return root
}

func TestWeightSupportPerDevice(t *testing.T) {
	sys := fakeSchedulers(t, map[Device]string{
		vda:  "none [mq-deadline] kyber bfq",
		sda:  "mq-deadline kyber [bfq] none",
		nvme: "[none] mq-deadline",
	})
	mount := t.TempDir()
	writeFake(t, mount, "io.cost.qos", "259:0 enable=1 ctrl=user rpct=95.00 rlat=5000 wpct=95.00 wlat=5000 min=50.00 max=150.00\n254:0 enable=0 ctrl=auto rpct=0.00 rlat=0 wpct=0.00 wlat=0 min=0.00 max=0.00\n")
	writeFake(t, mount, "io.cost.model", "259:0 ctrl=user model=linear rbps=1 rseqiops=1 rrandiops=1 wbps=1 wseqiops=1 wrandiops=1\n254:0 ctrl=auto model=linear rbps=1 rseqiops=1 rrandiops=1 wbps=1 wseqiops=1 wrandiops=1\n")
	v2 := NewWeights(ioV2{mount: mount}, sys)
	v1 := NewWeights(blkioV1{mount: mount}, sys)
	tests := []struct {
		w        Weights
		dev      Device
		file     string
		enforced bool
		note     string
	}{
		{v2, sda, "io.bfq.weight", true, "BFQ"},
		{v2, nvme, "io.weight", true, "io.cost is enabled"},
		{v2, vda, "", false, "not enforced: 254:0's scheduler mq-deadline ignores weights and io.cost is not enabled"},
		{v1, sda, "blkio.bfq.weight_device", true, "BFQ"},
		{v1, nvme, "", false, "not enforced: 259:0's scheduler none ignores weights, and io.cost exists only on cgroup v2"},
		{v1, vda, "", false, "scheduler mq-deadline"},
		{v2, Device{Major: 7, Minor: 9}, "", false, "(none in sysfs)"},
	}
	for _, tt := range tests {
		s := tt.w.Support(tt.dev)
		if s.File != tt.file || s.Enforced != tt.enforced || !strings.Contains(s.Note, tt.note) {
			t.Errorf("v%d %s: support %+v, want file %q enforced %v note ~%q", tt.w.Version(), tt.dev, s, tt.file, tt.enforced, tt.note)
		}
	}
}

func TestParseSchedulerAndIOCost(t *testing.T) {
	for content, want := range map[string]string{
		"[none] mq-deadline kyber\n": "none",
		"mq-deadline [bfq]":          "bfq",
		"none\n":                     "none",
		"":                           "",
	} {
		if got := ParseScheduler(content); got != want {
			t.Errorf("ParseScheduler(%q) = %q, want %q", content, got, want)
		}
	}
	qos := "8:0 enable=1 ctrl=user\n"
	if ParseIOCost(qos, "", sda) {
		t.Error("io.cost with no model counted as enforcing")
	}
	if !ParseIOCost(qos, "8:0 ctrl=user model=linear rbps=1\n", sda) {
		t.Error("io.cost enabled with a model not seen")
	}
	if ParseIOCost("8:0 enable=0\n", "8:0 ctrl=user model=linear\n", sda) {
		t.Error("io.cost enable=0 counted as enforcing")
	}
}

func TestScaleWeightFollowsSystemd(t *testing.T) {
	for _, tt := range []struct {
		file string
		in   uint64
		want uint64
	}{
		{"io.weight", 1, 1}, {"io.weight", 10000, 10000}, {"io.weight", 250, 250},
		{"io.bfq.weight", 1, 1}, {"io.bfq.weight", 100, 100}, {"io.bfq.weight", 10000, 1000},
		{"io.bfq.weight", 1000, 181}, {"blkio.bfq.weight_device", 50, 50},
		{"blkio.weight_device", 100, 500}, {"blkio.weight_device", 1, 10}, {"blkio.weight_device", 10000, 1000},
	} {
		if got := ScaleWeight(tt.file, tt.in); got != tt.want {
			t.Errorf("ScaleWeight(%s, %d) = %d, want %d", tt.file, tt.in, got, tt.want)
		}
	}
}

func TestWeightLinesWritesAndReadBack(t *testing.T) {
	sys := fakeSchedulers(t, map[Device]string{sda: "[bfq] none", vda: "[none]"})
	w := NewWeights(ioV2{mount: t.TempDir()}, sys)
	lines, unenforced := w.Lines([]IOWeight{{Device: sda, Weight: 1000}, {Device: vda, Weight: 400}})
	wantLines := []WeightLine{{File: "io.bfq.weight", Device: sda, Value: 181}}
	if !slices.Equal(lines, wantLines) {
		t.Errorf("Lines = %+v, want %+v", lines, wantLines)
	}
	if len(unenforced) != 1 || unenforced[0].Device != vda || unenforced[0].Enforced {
		t.Errorf("unenforced = %+v, want vda reported", unenforced)
	}
	writes := w.Writes(append(lines, WeightLine{File: "io.weight", Device: vda}, WeightLine{File: "blkio.weight_device", Device: vda}))
	wantWrites := []Write{{"io.bfq.weight", "8:0 181"}, {"io.weight", "254:0 default"}, {"blkio.weight_device", "254:0 0"}}
	if !slices.Equal(writes, wantWrites) {
		t.Errorf("Writes = %q, want %q", writes, wantWrites)
	}

	dir := filepath.Join(t.TempDir(), "kubepods", "pod1")
	writeFake(t, dir, "io.bfq.weight", "default 100\n8:0 181\n")
	writeFake(t, dir, "io.weight", "default 100\n")
	got, err := w.Read(dir, w.WeightFiles())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, wantLines) {
		t.Errorf("Read = %+v, want %+v", got, wantLines)
	}
	writeFake(t, dir, "io.weight", "default 100\n8:0 heavy\n")
	if _, err := w.Read(dir, w.WeightFiles()); err == nil || !strings.Contains(err.Error(), "io.weight") {
		t.Errorf("Read of a malformed io.weight = %v, want an error naming the file", err)
	}
	v1 := NewWeights(blkioV1{mount: t.TempDir()}, sys)
	if got, err := v1.Read(dir, v1.WeightFiles()); err != nil || len(got) != 0 {
		t.Errorf("v1 Read where the kernel offers no weight file = %v, %v; want nothing", got, err)
	}
}

func TestDeviceWeightProperty(t *testing.T) {
	weights := []IOWeight{{Device: sda, Weight: 400}, {Device: vda, Weight: 1}}
	v2 := DeviceWeightProperty(2, weights)
	if v2.Name != "IODeviceWeight" || v2.Value.Signature().String() != "a(st)" {
		t.Fatalf("v2 property %s %s, want IODeviceWeight a(st)", v2.Name, v2.Value.Signature())
	}
	want := []deviceValue{{"/dev/block/8:0", 400}, {"/dev/block/254:0", 1}}
	if got, _ := v2.Value.Value().([]deviceValue); !slices.Equal(got, want) {
		t.Errorf("v2 value %+v, want %+v", v2.Value.Value(), want)
	}
	v1 := DeviceWeightProperty(1, weights)
	want = []deviceValue{{"/dev/block/8:0", 1000}, {"/dev/block/254:0", 10}}
	if got, _ := v1.Value.Value().([]deviceValue); v1.Name != "BlockIODeviceWeight" || !slices.Equal(got, want) {
		t.Errorf("v1 property %s %+v, want BlockIODeviceWeight %+v (CFQ units)", v1.Name, v1.Value.Value(), want)
	}
}

// io.max keys go to systemd one property per key, an entry per path that sets it:
// never an empty list, which would reset the operator's entries too.
func TestIOLimitProperties(t *testing.T) {
	props := IOLimitProperties([]UnitIOLimit{{Path: "/dev/sda", IOLimit: IOLimit{Device: sda, ReadBPS: 1 << 20, WriteIOPS: 20}},
		{Path: "/dev/block/254:0", IOLimit: IOLimit{Device: vda, ReadBPS: UnitLimitMax}}})
	got := map[string][]deviceValue{}
	for _, p := range props {
		if p.Value.Signature().String() != "a(st)" {
			t.Fatalf("%s has signature %s, want a(st)", p.Name, p.Value.Signature())
		}
		got[p.Name], _ = p.Value.Value().([]deviceValue)
	}
	want := map[string][]deviceValue{
		"IOReadBandwidthMax": {{"/dev/sda", 1 << 20}, {"/dev/block/254:0", UnitLimitMax}},
		"IOWriteIOPSMax":     {{"/dev/sda", 20}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("properties %+v, want %+v", got, want)
	}
	if props := IOLimitProperties([]UnitIOLimit{{Path: "/dev/sda", IOLimit: IOLimit{Device: sda}}}); len(props) != 0 {
		t.Errorf("properties for no key: %+v", props)
	}
}
