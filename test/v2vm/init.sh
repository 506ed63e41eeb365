#!/bin/busybox sh
# /init of the test VM: a cgroup2-only system with a virtio disk at /mnt,
# runs the cgroup package's root test there, prints a marker, powers off.
/bin/busybox --install -s /bin
export PATH=/bin

mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys

# Order matters: each module needs the ones before it. A module the kernel
# has built in is simply not in the initramfs.
for module in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
	if [ -f "/lib/modules/$module.ko" ]; then
		insmod "/lib/modules/$module.ko" || echo "v2vm: insmod $module failed"
	fi
done
tries=0
while [ ! -b /dev/vda ] && [ "$tries" -lt 100 ]; do
	usleep 100000
	tries=$((tries + 1))
done

result=FAIL
if mount -t cgroup2 none /sys/fs/cgroup &&
	echo +io >/sys/fs/cgroup/cgroup.subtree_control &&
	echo "v2vm: controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)" &&
	mount -t ext4 /dev/vda /mnt &&
	mkdir -p /mnt/tmp; then
	# TMPDIR on the virtio disk: the test writes there with O_DIRECT.
	if TMPDIR=/mnt/tmp /cgroup.test -test.run '^(TestRootThrottleDirectWrite|TestRootPressureGrowsUnderThrottle|TestRootLimitWatchCgroupRemovedAndMadeAgain)$' -test.v -test.count=1; then
		result=PASS
	fi
	umount /mnt
fi
echo "CRIGUARD-V2VM-RESULT: $result"
poweroff -f
