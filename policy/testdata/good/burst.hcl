device "data" {
  path = "/var/lib/containerd"
}

class "bursty" {
  io {
    device     = "data"
    write_bps  = "40MiB"
    read_bps   = "100MiB"
    write_iops = 1000
    burst {
      write_bps  = "200MiB" # only the keys named here burst, each up to its rate
      read_bps   = "max"    # unthrottled while credit lasts
      credit     = "1GiB"   # each bursting bps key's bucket
      credit_ops = 50000    # no iops rate named: write_iops bursts unthrottled
    }
  }
}

rule "builds" {
  match {
    namespaces = ["ci-*"]
  }
  class = "bursty"
}
