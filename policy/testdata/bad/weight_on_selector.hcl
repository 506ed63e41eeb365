class "gold" {
  io {
    device = "rootfs"
    weight = 400
  }
}
