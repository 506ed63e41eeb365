class "bulk" {
  io {
    device    = "8:0"
    write_bps = var.write
  }
}
