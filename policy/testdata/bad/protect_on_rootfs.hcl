class "latency" {
  io {
    device = "rootfs"
    protect {
      pressure_some_avg10 = 10
    }
  }
}
