package resolve

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestSpecRoot(t *testing.T) {
	for raw, want := range map[string]string{
		`{"runtimeSpec":{"root":{"path":"/var/lib/containers/storage/overlay/3c1d/merged"}}}`: "/var/lib/containers/storage/overlay/3c1d/merged", // CRI-O
		`{"runtimeSpec":{"root":{"path":"rootfs"}}}`:                                          "",                                                // containerd: relative to its bundle
		`{"runtimeSpec":{}}`: "",
	} {
		v, err := parseVerboseInfo(map[string]string{"info": raw})
		if err != nil {
			t.Fatal(err)
		}
		got, err := specRoot(v)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("specRoot(%s) = %q, %v; want %q", raw, got, err, want)
		}
	}
}

func TestProcRootfs(t *testing.T) {
	r := procResolver{procRoot: "/fakeproc", pid: func(context.Context, string) (int, error) { return 77, nil }}
	if got, err := r.Rootfs(context.Background(), "c"); err != nil || got != "/fakeproc/77/root" {
		t.Errorf("Rootfs = %q, %v", got, err)
	}
	r.pid = func(context.Context, string) (int, error) { return 0, nil }
	if _, err := r.Rootfs(context.Background(), "c"); err == nil {
		t.Error("a container without a process has a root")
	}
}

type rootfsFunc struct {
	resolverFunc
	path string
	err  error
}

func (r rootfsFunc) Rootfs(context.Context, string) (string, error) { return r.path, r.err }

func TestChainRootfsAsksInOrder(t *testing.T) {
	plain := resolverFunc{name: "plain"}
	failing := rootfsFunc{resolverFunc{name: "a"}, "", errors.New("no snapshot")}
	ok := rootfsFunc{resolverFunc{name: "b"}, "/upper", nil}
	if got, err := (chain{plain, failing, ok}).Rootfs(context.Background(), "x"); err != nil || got != "/upper" {
		t.Errorf("Rootfs = %q, %v", got, err)
	}
	_, err := (chain{plain, failing}).Rootfs(context.Background(), "x")
	if !errors.Is(err, ErrNoRootfs) || !strings.Contains(err.Error(), "no snapshot") {
		t.Errorf("all fail: %v, want ErrNoRootfs with each reason", err)
	}
	if _, err := (chain{plain}).Rootfs(context.Background(), "x"); !errors.Is(err, ErrNoRootfs) {
		t.Errorf("none can: %v, want ErrNoRootfs", err)
	}
}
