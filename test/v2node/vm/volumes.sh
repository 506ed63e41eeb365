# shellcheck shell=bash
# Issue 12 on the v2 node (sourced by main.sh, containerd 2 only): volumes and the
# writable layer, on the device shapes this kernel has and the host's lacks (dm-linear,
# a partition, and issue 23's md raid1).

readonly VOLS_DEV_ROOT=254:0 # vda: the root disk, under emptyDirs and the writable layers
readonly VOLS_DEV_PART=254:48 # vdd: the disk of partition vdd1
readonly VOLS_LIMIT="rbps=max wbps=1048576 riops=max wiops=max"
readonly VOLS_MD=/dev/md0

# volumes_prepare: after criguard started (so the devices are new to it), a dm-linear
# device over a loop at /mnt/lv and the partition vdd1 at /mnt/part.
volumes_prepare() {
	quiet modprobe loop && quiet modprobe dm-mod || return 1
	mkdir -p /mnt/lv /mnt/part /mnt/md # the pod starts even if a volume could not be made
	truncate -s 96M /data/lv.img
	local loopdev
	loopdev=$(losetup --find --show /data/lv.img) || return 1
	quiet dmsetup create criguard-lv --table "0 $(blockdev --getsz "$loopdev") linear $loopdev 0" || return 1
	quiet mkfs.ext4 -q -F /dev/mapper/criguard-lv && quiet mount /dev/mapper/criguard-lv /mnt/lv || return 1
	wait_for 30 test -b /dev/vdd1 || return 1
	quiet mkfs.ext4 -q -F /dev/vdd1 && quiet mount /dev/vdd1 /mnt/part || return 1
	VOLS_DEV_LV=$(lsblk -dno MAJ:MIN /dev/mapper/criguard-lv | tr -d ' ')
	info "volumes/devices: /mnt/lv on dm $VOLS_DEV_LV over $loopdev, /mnt/part on vdd1 (disk $VOLS_DEV_PART)"
	md_prepare || fail "volumes/md/prepare" "the md raid1 could not be made: ${MD_ERROR:-see $LOG}"
	return 0
}

# md_prepare: a raid1 md0 of two 64 MiB loop devices at /mnt/md, made by Debian's mdadm
# from the assets disk (run.sh; the image has none). --assume-clean: no resync I/O beside
# the timings. Sets VOLS_DEV_MD and MD_LOOPS ("loopX+loopY", as explain names them).
md_prepare() {
	local t0=$SECONDS
	quiet modprobe raid1 || { MD_ERROR="modprobe raid1 failed" && return 1; }
	truncate -s 64M /data/md-a.img /data/md-b.img
	local a b out
	if ! a=$(losetup --find --show /data/md-a.img) || ! b=$(losetup --find --show /data/md-b.img); then
		MD_ERROR="losetup failed"
		return 1
	fi
	# --run: no questions (stdin is not a terminal here).
	if ! out=$(MDADM_NO_SYSTEMCTL=1 "$A/bin/mdadm" --create "$VOLS_MD" --run --assume-clean \
		--metadata=1.2 --level=1 --raid-devices=2 "$a" "$b" 2>&1 </dev/null); then
		MD_ERROR="mdadm --create: $(tr '\n' ' ' <<<"$out")"
		return 1
	fi
	echo "$out" >>"$LOG"
	wait_for 30 test -b "$VOLS_MD" || { MD_ERROR="no $VOLS_MD after mdadm --create" && return 1; }
	if ! quiet mkfs.ext4 -q -F "$VOLS_MD" || ! quiet mount "$VOLS_MD" /mnt/md; then
		MD_ERROR="mkfs.ext4 or mount of $VOLS_MD failed"
		return 1
	fi
	VOLS_DEV_MD=$(lsblk -dno MAJ:MIN "$VOLS_MD" | tr -d ' ')
	# In name order, as /sys/block/md0/slaves lists them.
	MD_LOOPS=$(printf '%s\n' "${a#/dev/}" "${b#/dev/}" | LC_ALL=C sort | paste -sd+)
	MD_PREPARE_S=$((SECONDS - t0))
	info "volumes/md/device: /mnt/md on $VOLS_MD ($VOLS_DEV_MD, $(cat /sys/block/md0/md/level) over ${MD_LOOPS/+/ and }), made in $MD_PREPARE_S s"
}

# md_checks EXPLAIN DATA_MS: the md volume's io.max line, 3 MiB direct through it (against
# md's own unthrottled time), its chain in EXPLAIN (the pod's). Prints the seconds taken.
md_checks() {
	local text=$1 t0=$SECONDS want got line
	if [[ -z ${VOLS_DEV_MD:-} ]]; then
		fail "volumes/md" "no md volume to check: ${MD_ERROR:-see $LOG}"
		return
	fi
	want="$VOLS_DEV_MD $VOLS_LIMIT"
	got=$(iomax "${DIR[vols]}" "$VOLS_DEV_MD")
	if [[ $got == "$want" ]]; then
		pass "volumes/md/io.max" "$got (md0 itself, not ${MD_LOOPS/+/ or })"
	else
		fail "volumes/md/io.max" "got \"$got\", want \"$want\" (io.max: $(tr '\n' ';' <"${DIR[vols]}/io.max" 2>/dev/null))"
	fi
	# md's own speed under TCG (two loop writes per write, a superblock update): the same
	# 3 MiB from this script's cgroup, which has no io.max line, is the baseline.
	local base=0 start
	start=$(date +%s%N)
	if dd if=/dev/zero of=/mnt/md/base bs=64k count=48 oflag=direct status=none 2>>"$LOG"; then
		base=$((($(date +%s%N) - start) / 1000000))
		info "volumes/md/unthrottled: 3 MiB direct to /mnt/md from outside any pod: $base ms (to /data in the pod: ${2:-?} ms)"
	else
		fail "volumes/md/unthrottled" "3 MiB direct to /mnt/md from outside any pod failed (see $LOG)"
	fi
	throttled "volumes/md/direct-write" "$(timed vols 'dd if=/dev/zero of=/md/f bs=64k count=48 oflag=direct')" 3000 "$base"
	line=$(grep "/md ← /mnt/md" <<<"$text")
	if [[ $line == *" → md0 (raid1, over $MD_LOOPS) → $VOLS_DEV_MD; limit $VOLS_DEV_MD "* ]]; then
		pass "volumes/md/explain" "${line#"${line%%/md ← *}"}"
	else
		fail "volumes/md/explain" "want \"/md ← /mnt/md … → md0 (raid1, over $MD_LOOPS) → $VOLS_DEV_MD; limit $VOLS_DEV_MD …\", got \"${line:-no /md line}\""
	fi
	info "volumes/md: made in $MD_PREPARE_S s, checked in $((SECONDS - t0)) s"
}

# volumes_checks: the limits read back per device, and measured.
volumes_checks() {
	if [[ -z ${VOLS_DEV_LV:-} ]]; then
		fail "volumes" "the dm-linear and partition volumes could not be made (see $LOG)"
		return
	fi
	local vols=${DIR[vols]} rootfs=${DIR[rootfs]} dev line want got
	for dev in "$VOLS_DEV_ROOT" "$VOLS_DEV_LV" "$VOLS_DEV_PART"; do
		want="$dev $VOLS_LIMIT"
		got=$(iomax "$vols" "$dev")
		if [[ $got == "$want" ]]; then
			pass "volumes/io.max/$dev" "$got"
		else
			fail "volumes/io.max/$dev" "got \"$got\", want \"$want\""
		fi
	done
	line=$(iomax "$vols")
	if [[ $line == none ]]; then
		pass "volumes/io.max/data-disk" "no line for $DEV: /data is not a throttled volume"
	else
		fail "volumes/io.max/data-disk" "\"$line\" on the disk of the unselected /data"
	fi
	# The writable layer's container: the root disk only.
	got=$(grep -c . "$rootfs/io.max" 2>/dev/null)
	line=$(iomax "$rootfs" "$VOLS_DEV_ROOT")
	if [[ $line == "$VOLS_DEV_ROOT $VOLS_LIMIT" && $got == 1 ]]; then
		pass "rootfs/io.max" "$line (and no other line)"
	else
		fail "rootfs/io.max" "got \"$(tr '\n' ';' <"$rootfs/io.max" 2>/dev/null)\", want only \"$VOLS_DEV_ROOT $VOLS_LIMIT\""
	fi

	# 3 MiB direct writes: about 3 s through each selected volume, fast on /data.
	local write='dd if=/dev/zero of=@/f bs=64k count=48 oflag=direct' base target
	base=$(timed vols "${write//@//data}")
	if [[ $base =~ ^[0-9]+$ ]] && ((base < 2400)); then
		pass "volumes/data-fast" "${base} ms to /data (vdb, not selected)"
	else
		fail "volumes/data-fast" "${base} ms to /data (vdb, not selected): not clearly faster than the 3 s a limit gives"
	fi
	for target in /scratch /lv /part; do
		throttled "volumes$target/direct-write" "$(timed vols "${write//@/$target}")" 3000 "${base:-0}"
	done
	local fast
	fast=$(timed rootfs "${write//@//data}")
	if [[ $fast =~ ^[0-9]+$ ]] && ((fast < 2400)); then
		pass "rootfs/data-fast" "${fast} ms to /data"
	else
		fail "rootfs/data-fast" "${fast} ms to /data: not clearly faster than 3 s"
	fi
	throttled "rootfs/direct-write" "$(timed rootfs "${write//@//tmp}")" 3000 "${fast:-0}"

	# explain names the chain of each mount.
	local text
	text=$(cli explain "${ID[vols]}" 2>&1)
	md_checks "$text" "${base:-0}"
	if grep -q "/lv ← /mnt/lv" <<<"$text" && grep -q "criguard-lv" <<<"$text" && grep -q "vdd1" <<<"$text" &&
		grep -q 'volume "scratch"' <<<"$text"; then
		pass "volumes/explain" "$(grep -E '(/lv|/part|/scratch) ← ' <<<"$text" | sed 's/^[^/]*//' | tr '\n' ';')"
	else
		fail "volumes/explain" "the mounts' chains are missing: $(tr '\n' ';' <<<"$text")"
	fi
}
