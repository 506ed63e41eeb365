device "data" {
  path = "/var/lib/containerd"
}

class "bulk" {
  io {
    device    = "dta"
    write_bps = "40MiB"
  }
}
