package protect

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/criguard/criguard/cgroup"
)

func TestStateRoundTripAndBadFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), StateFile)
	if st, err := LoadState(path); err != nil || len(st.Devices) != 0 {
		t.Fatalf("missing file = %+v, %v; want an empty state", st, err)
	}
	dev := cgroup.Device{Major: 254}
	want := State{Devices: []DeviceState{{Device: dev, Protecting: []string{"web/db"},
		Yielders: []YielderState{{Container: "c2", Kind: WriteBPS, Limit: 20 * mib, Ceiling: 160 * mib}}}}}
	b, err := encodeState(want)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(path)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, want)
	}
	if y, who, ok := got.Find("c2", dev, WriteBPS); !ok || y.Limit != 20*mib || who[0] != "web/db" {
		t.Errorf("Find = %+v %v %v", y, who, ok)
	}
	for _, bad := range []string{`{`, `{"version":2,"devices":[]}`, `{"version":1,"devices":[{"device":"x","yielders":[]}]}`,
		`{"version":1,"devices":[{"device":"254:0","yielders":[{"container":"c","kind":"write_bps","limit":0}]}]}`,
		`{"version":1,"devices":[{"device":"254:0","yielders":[{"container":"c","kind":"wbps","limit":1}]}]}`} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadState(path); !errors.Is(err, ErrStateUnreadable) {
			t.Errorf("LoadState(%s) = %v, want ErrStateUnreadable", bad, err)
		}
	}
}
