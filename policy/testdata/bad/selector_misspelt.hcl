class "vol" {
  io {
    device    = "rootf"
    write_bps = "10MiB"
  }
}
