device "" {
  path = "/dev/sda"
}

class " " {
  io {
    device    = "/dev/sda"
    write_bps = "1MiB"
  }
}
