device "data" {
  path = "/var/lib/containerd"
}

class "gold" {
  io {
    device = "data"
    weight = 20000
  }
}
