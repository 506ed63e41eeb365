class "bursty" {
  io {
    device    = "8:0"
    write_bps = "40MiB"
    burst {
      read_bps = "200MiB"
      credit   = "1GiB"
    }
  }
}
