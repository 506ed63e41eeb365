device "data" {
  path = "/var/lib/containerd"
}

class "latency" {
  io {
    device = "data"
    protect {
      pressure_some_avg10 = 12.5
    }
  }
}

class "batch" {
  io {
    device    = "data"
    write_bps = "200MiB"
    yield {
      floor   = "20MiB"
      ceiling = "800MiB"
    }
  }
}

rule "web" {
  class = "latency"
  match {
    namespaces = ["web"]
  }
}

rule "batch" {
  class = "batch"
}
