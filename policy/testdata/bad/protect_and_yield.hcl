class "both" {
  io {
    device    = "8:0"
    write_bps = "100MiB"
    protect {
      pressure_some_avg10 = 10
    }
    yield {
      floor = "10MiB"
    }
  }
}
