class "latency" {
  io {
    device = "8:0"
    protect {
      pressure_some_avg10 = 100
    }
  }
}
