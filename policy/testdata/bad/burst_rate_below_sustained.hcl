class "bursty" {
  io {
    device    = "8:0"
    write_bps = "40MiB"
    burst {
      write_bps = "20MiB"
      credit    = "1GiB"
    }
  }
}
