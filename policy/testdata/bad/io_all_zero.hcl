class "bulk" {
  io {
    device    = "/dev/sda"
    read_bps  = 0
    write_bps = "0MiB"
  }
}
