# Per-pod annotations: pods pick a class with the annotation containerd and CRI-O
# already know, or ask for their own numbers. Annotations are the tenant's, so by
# default they only tighten what the rule gives, key by key and device by device:
#
#   metadata:
#     annotations:
#       blockio.resources.beta.kubernetes.io/container.db: "fast"  # adds fast's IOPS limits to "db"
#       criguard.io/write-bps: "10MiB"                              # below the rule's 40MiB: applies
#       criguard.io/read-iops.db: "3000"                            # container "db" only
#       criguard.io/write-bps: "80MiB"                              # looser than the rule: ignored
#
# A class named here but not in `classes`, a number above a max_*, zero, or garbage is
# ignored with a log line and criguard_annotations_ignored_total{reason}. A class this
# file does not declare is the runtime's own blockio class: criguard leaves such a pod
# to the runtime unless a rule applies to it.

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
  classes        = ["bulk", "fast"]  # none unless listed
  # allow_loosen = true              # let annotations replace the numbers they name, up to the max_*
  max_read_bps   = "500MiB"
  max_write_bps  = "200MiB"
  max_read_iops  = 10000
  max_write_iops = 5000
}
