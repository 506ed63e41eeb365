class "batch" {
  io {
    device    = "8:0"
    write_bps = "100MiB"
    yield {
      floor = 0
    }
  }
}
