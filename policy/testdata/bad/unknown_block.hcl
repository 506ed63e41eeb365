devcie "data" {
  path = "/var/lib/containerd"
}
