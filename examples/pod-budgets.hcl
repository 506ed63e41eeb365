# Pod-scope budgets: one budget shared by all the containers of a pod, written to the
# pod's cgroup, so that a pod with many containers cannot multiply its share.

device "data" {
  path = "/var/lib/containerd"
}

device "logs" {
  path = "8:16" # MAJ:MIN works where no path is convenient
}

class "pod-small" {
  io {
    device    = "data"
    read_bps  = "50MiB"
    write_bps = "25MiB"
  }
  io {
    device    = "logs"
    write_bps = "10MiB"
  }
}

class "pod-large" {
  io {
    device     = "data"
    read_bps   = "1GiB"
    write_bps  = "500MiB"
    write_iops = 10000
  }
}

rule "analytics" {
  match {
    namespaces      = ["analytics"]
    pod_annotations = { "example.com/tier" = "large" }
  }
  class = "pod-large"
  scope = "pod"
}

rule "tenants" {
  match {
    namespaces = ["tenant-*"]
    qos        = ["burstable", "besteffort"]
  }
  class = "pod-small"
  scope = "pod"
}
