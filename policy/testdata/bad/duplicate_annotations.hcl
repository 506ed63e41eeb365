device "data" {
  path = "/dev/sda"
}

annotations {
  enabled = true
}

annotations {
  max_write_bps = "100MiB"
}
