class "batch" {
  io {
    device    = "8:0"
    read_bps  = "100MiB"
    write_bps = "100MiB"
    yield {
      floor   = "10MiB"
      ceiling = "500MiB"
    }
  }
}
