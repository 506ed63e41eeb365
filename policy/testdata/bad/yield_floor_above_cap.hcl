class "batch" {
  io {
    device    = "8:0"
    write_bps = "20MiB"
    yield {
      floor = "40MiB"
    }
  }
}
