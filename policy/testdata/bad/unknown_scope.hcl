class "bulk" {
  io {
    device    = "8:0"
    write_bps = "40MiB"
  }
}

rule "batch" {
  class = "bulk"
  scope = "pods"
}
