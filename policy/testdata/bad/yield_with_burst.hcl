class "batch" {
  io {
    device    = "8:0"
    write_bps = "100MiB"
    burst {
      credit = "1GiB"
    }
    yield {
      floor = "10MiB"
    }
  }
}
