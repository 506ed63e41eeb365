class "vol" {
  io {
    volumes   = []
    write_bps = "10MiB"
  }
}
