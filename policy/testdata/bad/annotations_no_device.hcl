annotations {
  enabled       = true
  max_write_bps = "100MiB"
}
