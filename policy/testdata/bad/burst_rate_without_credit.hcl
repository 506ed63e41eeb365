class "bursty" {
  io {
    device     = "8:0"
    write_iops = 100
    write_bps  = "40MiB"
    burst {
      write_iops = 1000
      credit     = "1GiB"
    }
  }
}
