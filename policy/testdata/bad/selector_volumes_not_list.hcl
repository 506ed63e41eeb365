class "vol" {
  io {
    volumes   = "data"
    write_bps = "10MiB"
  }
}
