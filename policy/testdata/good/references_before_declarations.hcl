# Blocks may come in any order: a rule may name a class declared below it.
rule "batch" {
  match {
    namespaces = ["batch"]
  }
  class = "bulk"
}

class "bulk" {
  io {
    device    = "data"
    write_bps = "1.5GiB"
  }
}

device "data" {
  path = "/dev/nvme0n1"
}
