device "/dev/sda" {
  path = "/dev/sdb"
}
