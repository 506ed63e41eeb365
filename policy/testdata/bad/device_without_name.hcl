device {
  path = "/dev/sda"
}
