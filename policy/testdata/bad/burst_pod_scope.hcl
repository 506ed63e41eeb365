class "bursty" {
  io {
    device    = "8:0"
    write_bps = "40MiB"
    burst {
      credit = "1GiB"
    }
  }
}

rule "pods" {
  class = "bursty"
  scope = "pod"
}
