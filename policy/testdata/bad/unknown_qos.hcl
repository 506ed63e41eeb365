class "bulk" {
  io {
    device    = "8:0"
    write_bps = "40MiB"
  }
}

rule "batch" {
  match {
    qos = ["burstable", "best-effort"]
  }
  class = "bulk"
}
