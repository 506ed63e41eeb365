# Weights: share the data disk between pods instead of capping them. Latency-sensitive
# pods get four times a default pod's disk time while they compete, batch pods a
# quarter; either gets the whole disk when the other is idle. Weights only count
# where the disk's scheduler honours them (BFQ, or io.cost on cgroup v2): run
# `criguard check --host` to see which disks do.

device "data" {
  path = "/var/lib/containerd"
}

class "interactive" {
  io {
    device = "data"
    weight = 400
  }
}

class "batch" {
  io {
    device    = "data"
    weight    = 25
    write_bps = "200MiB" # a cap may sit beside the weight
  }
}

# Pod scope: the weight is on the pod's cgroup, where pods compete with each other.
rule "interactive" {
  match {
    pod_labels = { tier = "frontend" }
  }
  class = "interactive"
  scope = "pod"
}

rule "batch" {
  match {
    namespaces = ["batch", "etl-*"]
  }
  class = "batch"
  scope = "pod"
}

# Pods may lower their own weight (criguard.io/io-weight: "10"), never raise it.
annotations {
  enabled = true
}
