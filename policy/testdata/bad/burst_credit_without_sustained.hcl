class "bursty" {
  io {
    device     = "8:0"
    write_iops = 100
    burst {
      credit = "1GiB"
    }
  }
}
