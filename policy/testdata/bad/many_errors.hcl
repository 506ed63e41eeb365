# Every problem is reported in one run, not one per run.
device "data" {
  path = "sda"
}

class "bulk" {
  io {
    device    = "data"
    write_bsp = "40MiB"
    read_bps  = "-1"
  }
}

rule "batch" {
  match {
    qos = ["gold"]
  }
  class = "nope"
  scope = "node"
}
