class "bulk" {
  io {
    device    = "/dev/sda"
    read_bps  = null
    write_bps = "40 MiB"
  }
}
