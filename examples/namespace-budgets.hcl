# Namespace budgets: each team's namespaces get their own disk-I/O class, every
# container throttled on its own. Check with: criguard check namespace-budgets.hcl

device "data" {
  path = "/var/lib/containerd" # the disk that holds container filesystems
}

class "gold" {
  io {
    device    = "data"
    read_bps  = "400MiB"
    write_bps = "200MiB"
  }
}

class "silver" {
  io {
    device     = "data"
    read_bps   = "100MiB"
    write_bps  = "50MiB"
    read_iops  = 4000
    write_iops = 2000
  }
}

class "bronze" {
  io {
    device     = "data"
    read_bps   = "20MiB"
    write_bps  = "10MiB"
    read_iops  = 500
    write_iops = 250
  }
}

rule "payments" {
  match {
    namespaces = ["payments", "payments-*"]
  }
  class = "gold"
}

rule "web" {
  match {
    namespaces = ["web-*", "api"]
  }
  class = "silver"
}

# Everything else, system namespaces excepted, shares the smallest class.
rule "default" {
  match {
    namespaces = ["default", "dev-*", "staging-*"]
  }
  class = "bronze"
}
