class "batch" {
  pids {
    max = 512
  }
  memory {
    high = "90%"
  }
  cpu {
    weight = 50
    max    = "1500m"
  }
}

class "capped" {
  io {
    device    = "/var/lib/containerd"
    write_bps = "40MiB"
  }
  pids {
    max = "64"
  }
  memory {
    high = "512MiB"
  }
  cpu {
    max = 0.5
  }
}

rule "batch" {
  match {
    namespaces = ["batch"]
  }
  class = "batch"
}
