# Throttle the disks a container really uses: its volumes and its writable layer,
# found per container at its start, whatever disk, partition, LVM volume or loop device
# backs them on this node. `criguard explain ID` shows each mount and its device.

class "database" {
  # A PVC through CSI: kubelet mounts it at
  # /var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~csi/<PV name>/mount,
  # so it is named by its PV ("pvc-<uid>" when provisioned dynamically).
  io {
    volumes    = ["pvc-*"]
    write_bps  = "200MiB"
    write_iops = 4000
  }
  # A hostPath volume has no name in its host path: name it by its container path.
  io {
    volumes   = ["/var/lib/mysql-binlog"]
    write_bps = "50MiB"
  }
}

class "scratch" {
  # An emptyDir named "scratch" in the pod spec:
  # /var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~empty-dir/scratch.
  io {
    volumes   = ["scratch"]
    write_bps = "40MiB"
  }
  # The container's writable layer (containerd's snapshot upper dir, Docker's
  # GraphDriver UpperDir): what it writes outside its volumes.
  io {
    device    = "rootfs"
    write_bps = "20MiB"
  }
}

class "any-volume" {
  # Every volume on a disk: emptyDir, PVCs, local PVs, hostPath. Secrets and projected
  # service account tokens live on tmpfs: explain lists them as skipped.
  io {
    device     = "volumes"
    write_iops = 1000
  }
}

rule "databases" {
  match {
    pod_labels = { tier = "db" }
  }
  class = "database"
  scope = "pod" # one budget for the pod on each disk its volumes use
}

rule "batch" {
  match {
    namespaces = ["batch", "etl-*"]
  }
  class = "scratch"
}

rule "everyone-else" {
  match {
    qos = ["besteffort", "burstable"]
  }
  class = "any-volume"
}
