device "data" {
  path = "/dev/sda"
  path = "/dev/sdb"
}
