package translate

import (
	"fmt"
	"testing"

	"github.com/criguard/criguard/cgroup"
)

func TestOwnedChange(t *testing.T) {
	vda, vdb := cgroup.Device{Major: 254, Minor: 0}, cgroup.Device{Major: 254, Minor: 16}
	tests := []struct {
		name                    string
		current, desired, owned []cgroup.IOLimit
		wantTarget, wantOwned   string
	}{
		{name: "first apply",
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[{254:0 0 1048576 0 0}]", wantOwned: "[{254:0 0 1048576 0 0}]"},
		{name: "in sync: nothing to write, still owned",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[]", wantOwned: "[{254:0 0 1048576 0 0}]"},
		{name: "a foreign limit on a device criguard never wrote is left alone",
			current:    []cgroup.IOLimit{{Device: vdb, WriteBPS: 5 << 20}},
			wantTarget: "[]", wantOwned: "[]"},
		{name: "a foreign key on criguard's device is kept when criguard writes its own",
			current:    []cgroup.IOLimit{{Device: vda, ReadIOPS: 300}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[{254:0 0 1048576 300 0}]", wantOwned: "[{254:0 0 1048576 0 0}]"},
		{name: "criguard's own limit is lifted when no longer wanted, the foreign one stays",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20, ReadIOPS: 300}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[{254:0 0 0 300 0}]", wantOwned: "[]"},
		{name: "a value someone changed since is theirs",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 7 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[]", wantOwned: "[]"},
		{name: "drift of a wanted key is repaired",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 7 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[{254:0 0 1048576 0 0}]", wantOwned: "[{254:0 0 1048576 0 0}]"},
		{name: "a stricter foreign value on a wanted key is kept, and not owned",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 512 << 10}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20, ReadBPS: 2 << 20}},
			wantTarget: "[{254:0 2097152 524288 0 0}]", wantOwned: "[{254:0 2097152 0 0 0}]"},
		{name: "a looser foreign value on a wanted key is tightened",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[{254:0 0 1048576 0 0}]", wantOwned: "[{254:0 0 1048576 0 0}]"},
		{name: "criguard's own stricter value gives way to a looser policy",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 512 << 10}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 512 << 10}},
			wantTarget: "[{254:0 0 1048576 0 0}]", wantOwned: "[{254:0 0 1048576 0 0}]"},
		{name: "someone tightened criguard's value since: theirs, kept",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 256 << 10}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[]", wantOwned: "[]"},
		{name: "a changed key: the old one lifted, the new one written",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, ReadBPS: 2 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[{254:0 2097152 0 0 0}]", wantOwned: "[{254:0 2097152 0 0 0}]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := OwnedChange(tt.current, tt.desired, tt.owned)
			if got := fmt.Sprint(nonNil(ch.Target)); got != tt.wantTarget {
				t.Errorf("Target = %s, want %s", got, tt.wantTarget)
			}
			if got := fmt.Sprint(nonNil(ch.Owned)); got != tt.wantOwned {
				t.Errorf("Owned = %s, want %s", got, tt.wantOwned)
			}
		})
	}
}

func TestForeign(t *testing.T) {
	vda := cgroup.Device{Major: 254, Minor: 0}
	got := Foreign([]cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20, ReadIOPS: 300}}, []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}})
	if fmt.Sprint(got) != "[{254:0 0 0 300 0}]" {
		t.Errorf("Foreign = %v", got)
	}
}

func nonNil(l []cgroup.IOLimit) []cgroup.IOLimit {
	if l == nil {
		return []cgroup.IOLimit{}
	}
	return l
}
