# A noisy batch class: batch and ETL jobs that stream through the data disk are held
# to a fraction of it, so that latency-sensitive pods on the same node keep their I/O.

device "data" {
  path = "/var/lib/containerd"
}

device "scratch" {
  path = "/dev/sdb" # a local scratch disk, named by its device node
}

class "noisy" {
  io {
    device     = "data"
    read_bps   = "100MiB"
    write_bps  = "40MiB"
    read_iops  = 2000
    write_iops = 1000
  }
  io {
    device    = "scratch"
    write_bps = "200MB" # SI units work too: 200 000 000 bytes/s
  }
}

class "trickle" {
  io {
    device     = "data"
    write_bps  = "5MiB"
    write_iops = 100
  }
}

# Best-effort batch pods of the data team, in the batch and etl-* namespaces.
rule "batch" {
  match {
    namespaces = ["batch", "etl-*"]
    pod_labels = { team = "data" }
    qos        = ["besteffort", "burstable"]
    containers = ["*"]
    images     = ["*"]
  }
  class = "noisy"
}

# Backup sidecars anywhere are slowed down further, whatever pod they are in.
rule "backup-sidecars" {
  match {
    containers = ["backup", "*-backup"]
    images     = ["registry.example.com/backup/*"]
  }
  class = "trickle"
}
