device "data" {
  path = "/dev/sda"
}

class "bulk" {
  io {
    device    = "data"
    write_bps = "40MiB"
  }
  io {
    device   = "/dev/sda"
    read_bps = "40MiB"
  }
}
