device "rootfs" {
  path = "/var/lib/containerd"
}

class "vol" {
  io {
    device    = "rootfs"
    write_bps = "10MiB"
  }
}
