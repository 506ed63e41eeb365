class "bulk" {
  io {
    device    = "8:0"
    write_bps = "40MiB"
  }
}

class "bulk" {
  io {
    device    = "8:0"
    write_bps = "10MiB"
  }
}
