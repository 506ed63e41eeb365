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
      write_bps  = "200MiB" # the most while credit lasts; read_bps bursts unthrottled
      credit     = "1GiB"   # each bps key's bucket
      credit_ops = 50000    # write_iops's bucket, unthrottled while it lasts
    }
  }
}

rule "builds" {
  match {
    namespaces = ["ci-*"]
  }
  class = "bursty"
}
