class "vol" {
  io {
    device    = "rootfs"
    volumes   = ["data"]
    write_bps = "10MiB"
  }
}
