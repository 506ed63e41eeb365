# The disks a container uses, found per container at its start.
class "volumes" {
  io {
    volumes   = ["data", "pvc-*", "/var/lib/mysql"] # volume names, or container paths
    write_bps = "20MiB"
  }
  io {
    device    = "rootfs" # the writable layer
    write_bps = "5MiB"
  }
}

class "every-volume" {
  io {
    device     = "volumes"
    write_iops = 500
  }
}

rule "db" {
  match {
    namespaces = ["db"]
  }
  class = "volumes"
  scope = "pod"
}

rule "rest" {
  class = "every-volume"
}
