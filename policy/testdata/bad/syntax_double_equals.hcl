device "data" {
  path = = "/var/lib/containerd"
}
