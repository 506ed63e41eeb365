package translate

import (
	"fmt"
	"testing"

	"github.com/criguard/criguard/cgroup"
)

func TestOwnedChange(t *testing.T) {
	vda, vdb := cgroup.Device{Major: 254, Minor: 0}, cgroup.Device{Major: 254, Minor: 16}
	tests := []struct {
		name                                string
		current, desired, owned, previous   []cgroup.IOLimit
		inPlace                             InPlace
		wantTarget, wantOwned, wantPrevious string
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
		{name: "drift of a wanted key is repaired; the value it overwrites comes back when criguard lets go",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 7 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[{254:0 0 1048576 0 0}]", wantOwned: "[{254:0 0 1048576 0 0}]", wantPrevious: "[{254:0 0 7340032 0 0}]"},
		{name: "a stricter foreign value on a wanted key is kept, and not owned",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 512 << 10}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20, ReadBPS: 2 << 20}},
			wantTarget: "[{254:0 2097152 524288 0 0}]", wantOwned: "[{254:0 2097152 0 0 0}]"},
		{name: "a looser foreign value on a wanted key is tightened",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[{254:0 0 1048576 0 0}]", wantOwned: "[{254:0 0 1048576 0 0}]", wantPrevious: "[{254:0 0 5242880 0 0}]"},
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

		// What stood before criguard wrote (issue 21, finding 7).
		{name: "a looser foreign value is tightened, and remembered",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20, ReadIOPS: 300}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[{254:0 0 1048576 300 0}]", wantOwned: "[{254:0 0 1048576 0 0}]", wantPrevious: "[{254:0 0 5242880 0 0}]"},
		{name: "a policy looser than the foreign value leaves it, remembering nothing",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 10 << 20}},
			wantTarget: "[]", wantOwned: "[]"},
		{name: "letting go puts back what stood before",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20, ReadIOPS: 300}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			previous:   []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}},
			wantTarget: "[{254:0 0 5242880 300 0}]", wantOwned: "[]"},
		{name: "a policy loosened past what stood before gives it back",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 10 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			previous:   []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}},
			wantTarget: "[{254:0 0 5242880 0 0}]", wantOwned: "[]"},
		{name: "a policy changed within what stood before keeps the memory",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 2 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			previous:   []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}},
			wantTarget: "[{254:0 0 2097152 0 0}]", wantOwned: "[{254:0 0 2097152 0 0}]", wantPrevious: "[{254:0 0 5242880 0 0}]"},
		{name: "in sync keeps the memory",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			previous:   []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}},
			wantTarget: "[]", wantOwned: "[{254:0 0 1048576 0 0}]", wantPrevious: "[{254:0 0 5242880 0 0}]"},
		{name: "a value someone changed since is theirs, the memory dropped",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 7 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			previous:   []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}},
			wantTarget: "[]", wantOwned: "[]"},
		{name: "a looser value someone wrote since is tightened again, and is what comes back",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 7 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			previous:   []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}},
			wantTarget: "[{254:0 0 1048576 0 0}]", wantOwned: "[{254:0 0 1048576 0 0}]", wantPrevious: "[{254:0 0 7340032 0 0}]"},
		{name: "an equal value the runtime may have written for criguard is adopted with nothing remembered",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			inPlace:    InPlaceMaybeOurs,
			wantTarget: "[]", wantOwned: "[{254:0 0 1048576 0 0}]"},
		{name: "an equal foreign value is adopted and remembered",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			inPlace:    InPlaceForeign,
			wantTarget: "[]", wantOwned: "[{254:0 0 1048576 0 0}]", wantPrevious: "[{254:0 0 1048576 0 0}]"},
		{name: "letting go of an adopted foreign value leaves it",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			owned:      []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			previous:   []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			wantTarget: "[]", wantOwned: "[]"},
		{name: "what is not equal is remembered whoever may write there",
			current:    []cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20}},
			desired:    []cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
			inPlace:    InPlaceForeign,
			wantTarget: "[{254:0 0 1048576 0 0}]", wantOwned: "[{254:0 0 1048576 0 0}]", wantPrevious: "[{254:0 0 5242880 0 0}]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := OwnedChange(tt.current, tt.desired, NewOwnership(tt.owned, tt.previous), tt.inPlace)
			if got := fmt.Sprint(nonNil(ch.Target)); got != tt.wantTarget {
				t.Errorf("Target = %s, want %s", got, tt.wantTarget)
			}
			if got := fmt.Sprint(nonNil(ch.Owned.Limits)); got != tt.wantOwned {
				t.Errorf("Owned = %s, want %s", got, tt.wantOwned)
			}
			if tt.wantPrevious == "" {
				tt.wantPrevious = "[]"
			}
			if got := fmt.Sprint(nonNil(ch.Owned.Previous)); got != tt.wantPrevious {
				t.Errorf("Previous = %s, want %s", got, tt.wantPrevious)
			}
		})
	}
}

func TestUnionOwned(t *testing.T) {
	vda, vdb := cgroup.Device{Major: 254, Minor: 0}, cgroup.Device{Major: 254, Minor: 16}
	before := NewOwnership([]cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20, ReadIOPS: 50}, {Device: vdb, ReadBPS: 1 << 20}},
		[]cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20, ReadIOPS: 300}, {Device: vdb, ReadBPS: 3 << 20}})
	after := NewOwnership([]cgroup.IOLimit{{Device: vda, WriteBPS: 2 << 20, ReadBPS: 4 << 20}},
		[]cgroup.IOLimit{{Device: vda, WriteBPS: 6 << 20}})
	u := UnionOwned(before, after)
	if got := fmt.Sprint(u.Limits); got != "[{254:0 4194304 2097152 50 0} {254:16 1048576 0 0 0}]" {
		t.Errorf("Limits = %s", got)
	}
	// A key both hold remembers what after remembers; the others keep theirs.
	if got := fmt.Sprint(u.Previous); got != "[{254:0 0 6291456 300 0} {254:16 3145728 0 0 0}]" {
		t.Errorf("Previous = %s", got)
	}
}

func TestNewOwnershipRemembersOnlyOwnedKeys(t *testing.T) {
	vda, vdb := cgroup.Device{Major: 254, Minor: 0}, cgroup.Device{Major: 254, Minor: 16}
	o := NewOwnership([]cgroup.IOLimit{{Device: vda, WriteBPS: 1 << 20}},
		[]cgroup.IOLimit{{Device: vda, WriteBPS: 5 << 20, ReadBPS: 9}, {Device: vdb, ReadBPS: 9}})
	if got := fmt.Sprint(o.Previous); got != "[{254:0 0 5242880 0 0}]" {
		t.Errorf("Previous = %s, want only the owned key's", got)
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
