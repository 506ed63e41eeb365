package cgroup

import "testing"

// Resolving a policy's device path on this host, as each reconcile pass does for
// every device the policy names: the mount table is read for it (to keep off hung
// filesystems), and reused while no mount changed.
//
//	go test -run '^$' -bench ResolvePath -benchmem ./cgroup/
func BenchmarkResolvePath(b *testing.B) {
	dir := b.TempDir()
	if _, err := (DeviceResolver{}).Resolve(dir); err != nil {
		b.Skipf("%s has no block device here: %v", dir, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (DeviceResolver{}).Resolve(dir); err != nil {
			b.Fatal(err)
		}
	}
}
