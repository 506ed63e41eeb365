# Per-pod annotations: pods pick a class with the annotation containerd and CRI-O
# already know, or ask for their own numbers, bounded here.
#
#   metadata:
#     annotations:
#       blockio.resources.beta.kubernetes.io/pod: "bulk"       # every container
#       blockio.resources.beta.kubernetes.io/container.db: "fast"
#       criguard.io/write-bps: "80MiB"                         # clamped to max_write_bps
#       criguard.io/read-iops.db: "3000"                       # container "db" only

device "data" {
  path = "/var/lib/containerd"
}

class "bulk" {
  io {
    device    = "data"
    read_bps  = "100MiB"
    write_bps = "40MiB"
  }
}

class "fast" {
  io {
    device     = "data"
    read_iops  = 8000
    write_iops = 4000
  }
}

# Pods without an annotation of their own.
rule "everyone" {
  class = "bulk"
}

annotations {
  enabled        = true
  device         = "data"
  classes        = ["bulk", "fast"]
  max_read_bps   = "500MiB"
  max_write_bps  = "200MiB"
  max_read_iops  = 10000
  max_write_iops = 5000
}
