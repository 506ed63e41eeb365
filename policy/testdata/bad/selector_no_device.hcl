class "vol" {
  io {
    write_bps = "10MiB"
  }
}
