class "batch" {
  io {
    device    = "8:0"
    write_iops = 1000
    yield {
      floor = "10MiB"
    }
  }
}
