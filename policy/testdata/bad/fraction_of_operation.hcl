device "data" {
  path = "/var/lib/containerd"
}

class "bulk" {
  io {
    device    = "data"
    read_iops = 10.5
  }
}
