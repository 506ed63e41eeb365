device "data" {
  path = "/var/lib/containerd"
}

annotations {
  enabled = "yes"
}
