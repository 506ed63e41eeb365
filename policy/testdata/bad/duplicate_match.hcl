class "bulk" {
  io {
    device    = "8:0"
    write_bps = "40MiB"
  }
}

rule "batch" {
  match {
    namespaces = ["batch"]
  }
  match {
    qos = ["besteffort"]
  }
  class = "bulk"
}
