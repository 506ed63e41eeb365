device "data" {
  path = "/var/lib/containerd"
}

class "bulk" {
  io {
    device   = "data"
    read_bps = "-10MiB"
  }
}
