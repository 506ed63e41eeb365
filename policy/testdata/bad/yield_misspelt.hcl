class "batch" {
  io {
    device    = "8:0"
    write_bps = "100MiB"
    yield {
      flor = "10MiB"
    }
  }
}
