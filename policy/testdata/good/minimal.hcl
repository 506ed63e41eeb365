class "slow" {
  io {
    device    = "8:0"
    write_bps = "10MiB"
  }
}

rule "all" {
  class = "slow"
}
