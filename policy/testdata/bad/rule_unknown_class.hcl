device "data" {
  path = "/var/lib/containerd"
}

class "bulk" {
  io {
    device    = "data"
    write_bps = "40MiB"
  }
}

rule "batch" {
  class = "bulck"
}
