package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func addFixtures(f *testing.F) {
	f.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "*.mountinfo"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range names {
		content, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(content))
	}
}

func FuzzParseMountInfo(f *testing.F) {
	addFixtures(f)
	f.Add("1 0 8:1 / /a\\040b rw - cgroup2 none rw\n")
	f.Fuzz(func(t *testing.T, content string) {
		h, err := ParseMountInfo(strings.NewReader(content))
		if err != nil {
			return
		}
		backend, err := h.IO()
		if err != nil {
			if h.Mode() != ModeUnknown && h.Mode() != ModeV1 {
				t.Errorf("mode %v with a cgroup2 mount but IO() failed: %v", h.Mode(), err)
			}
			return
		}
		if h.Mode() == ModeUnknown {
			t.Errorf("IO() = %v on an unknown host", backend)
		}
	})
}

func FuzzParseIOMax(f *testing.F) {
	f.Add("8:16 rbps=2097152 wbps=max riops=max wiops=120\n")
	f.Add("254:0 rbps=max wbps=1048576 riops=max wiops=max")
	f.Fuzz(func(t *testing.T, content string) {
		limits, err := ParseIOMax(content)
		if err != nil {
			return
		}
		// What parses must serialize back to lines that parse to the same.
		var lines []string
		for _, l := range limits {
			lines = append(lines, ioMaxLine(l))
		}
		again, err := ParseIOMax(strings.Join(lines, "\n"))
		if err != nil || len(again) != len(limits) {
			t.Fatalf("round trip of %q: %+v, %v", lines, again, err)
		}
		for i := range again {
			if again[i] != limits[i] {
				t.Errorf("round trip changed %+v into %+v", limits[i], again[i])
			}
		}
	})
}

func FuzzParseIOStat(f *testing.F) {
	f.Add("8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n")
	f.Add("254:0 rbytes=1 cost.vrate=100.00\n")
	f.Fuzz(func(t *testing.T, content string) {
		stats, err := parseIOStat(content)
		if err == nil && strings.TrimSpace(content) == "" && len(stats) != 0 {
			t.Errorf("stats %+v from blank input", stats)
		}
	})
}

func FuzzParseBlkio(f *testing.F) {
	f.Add("254:0 Read 4096\n254:0 Write 3145728\n254:0 Total 3149824\nTotal 3149824\n")
	f.Add("8:0 1048576\n254:0 0\n")
	f.Fuzz(func(t *testing.T, content string) {
		if values, err := parseBlkioThrottle(content); err == nil {
			for d := range values {
				if _, err := ParseDevice(d.String()); err != nil {
					t.Errorf("device %v does not print as MAJ:MIN: %v", d, err)
				}
			}
		}
		_, _ = parseBlkioStat(content)
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add("9:name=systemd:/kubepods.slice\n7:blkio:/kubepods/pod1/abc\n0::/\n")
	f.Add("0::/a:b\n")
	f.Fuzz(func(t *testing.T, content string) {
		paths, err := ParseProcCgroup(strings.NewReader(content))
		if err != nil {
			return
		}
		for controller, path := range paths {
			if !strings.HasPrefix(path, "/") {
				t.Errorf("%q → %q is not absolute", controller, path)
			}
		}
	})
}

func FuzzCleanJoin(f *testing.F) {
	f.Add("/sys/fs/cgroup", "/kubepods/burstable/pod1/abc")
	f.Add("/run/cg", "../../etc")
	f.Add("/", "a/./b")
	f.Fuzz(func(t *testing.T, mount, rel string) {
		joined, err := CleanJoin(mount, rel)
		if err != nil {
			return
		}
		if !within(filepath.Clean(mount), joined) {
			t.Errorf("CleanJoin(%q, %q) = %q, outside the mount", mount, rel, joined)
		}
	})
}

func FuzzParseDevice(f *testing.F) {
	f.Add("254:0")
	f.Add("8:-1")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDevice(s)
		if err != nil {
			return
		}
		if again, err := ParseDevice(d.String()); err != nil || again != d {
			t.Errorf("ParseDevice(%q) = %v, which prints as %q and parses to %v, %v", s, d, d.String(), again, err)
		}
	})
}
