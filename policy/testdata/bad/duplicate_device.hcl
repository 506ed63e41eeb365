device "data" {
  path = "/var/lib/containerd"
}

device "data" {
  path = "/dev/sdb"
}
