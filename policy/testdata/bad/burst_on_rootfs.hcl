class "bursty" {
  io {
    device    = "rootfs"
    write_bps = "40MiB"
    burst {
      credit = "1GiB"
    }
  }
}
