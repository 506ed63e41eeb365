class "bulk" {
  io {
    device = "/dev/sda"
  }
}
