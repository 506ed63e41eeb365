package main

import (
	"testing"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice"
)

func TestFormatMountDisk(t *testing.T) {
	const host = "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pvc-1234/mount"
	limits := []cgroup.IOLimit{{Device: cgroup.Device{Major: 253, Minor: 3}, WriteBPS: 1 << 20}}
	for _, tt := range []struct {
		m    criservice.MountDisk
		want string
	}{
		{criservice.MountDisk{Kind: "volume", Volume: "pvc-1234", Plugin: "kubernetes.io~csi", ContainerPath: "/db", HostPath: host,
			Selector: `volumes ["pvc-*"]`, Chain: host + " → dm-3 (vg0-pvc--1234) → 253:3", Device: "253:3"},
			`/db ← ` + host + ` (volume "pvc-1234", kubernetes.io~csi, by volumes ["pvc-*"]) → dm-3 (vg0-pvc--1234) → 253:3; limit 253:3 rbps=- wbps=1MiB riops=- wiops=-`},
		{criservice.MountDisk{Kind: "volume", Volume: "tls", ContainerPath: "/tls", HostPath: "/x/tls", Selector: "volumes", Skipped: "/x/tls is on tmpfs"},
			`/tls ← /x/tls (volume "tls", by volumes): skipped, no block device: /x/tls is on tmpfs`},
		{criservice.MountDisk{Kind: "rootfs", Selector: "rootfs", Error: "not found"},
			`- (by rootfs): not resolved, retried: not found`},
	} {
		if got := formatMountDisk(tt.m, limits); got != tt.want {
			t.Errorf("formatMountDisk =\n%s\nwant\n%s", got, tt.want)
		}
	}
}
